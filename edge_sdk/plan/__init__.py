"""Memory planning: where activations live, and whether a model fits a board.

* `records`: the `Buffer` record planners work on.
* `arena`: planners by name (`greedy_by_size`, `naive`), lower bound, report.
* `verify`: an independent check of any plan.
* `trace`: the native core's buffers for one layer, I/O buffers, RoPE table.
* `budget`: `plan_device`, the whole device budget and its choices.
* `estimates`: decode and prefill speed from a board's fields.
* `picture`: the arena and the budget as SVG (PNG with matplotlib).

Nothing is imported here, so that backends can import `plan.records` cheaply.

Example::

    from edge_sdk.plan.budget import plan_device
    plan_device(cfg, qcfg, load_board("raspberry-pi-5-4gb"), ctx=2048).fits
"""
