"""Benchmarks (a tool): speed, memory and accuracy of the SDK measured side by side with peers.

Nothing in the library imports this package; `edge-sdk bench` (`cli/bench.py`) and `python -m
edge_sdk.bench.<module>` do. `backends` measures prefill and decode tokens/s and peak memory of every backend
in its own process, in rounds interleaved with llama.cpp's (`peer`) and with the machine's read bandwidth
(`machine`), each round's turns laid out in `schedule` and counted in `summary` (medians, per-round
ratios); `busy` runs CPU-bound processes beside a benchmark and records the load average of every
measurement; `rss` compares the peak memory of whole runs with llama-cli's; `readme_table` measures the
README's performance tables; `sweep` runs it over thread counts and context lengths; `plan` compares the
planner's predictions with measured runs; `soak` runs thousands of generations and records memory; `native_core` and
`native_busy` time native-core builds against each other, idle and next to busy processes. The C core's
micro-benchmarks are in `native/bench/` (`make -C native bench`).
"""
