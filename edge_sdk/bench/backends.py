"""Benchmarks: prefill and decode speed, peak memory, memory bandwidth, and llama.cpp as a peer.

The model is converted to a package first (once, cached), then each backend
runs in a fresh Python process (`python -m edge_sdk.bench.backends --worker ...`)
that loads the package, so its peak resident size is its own. There the
model is loaded and warmed up with one prefill and a few decode steps; a
round is a prefill of `prompt_tokens` tokens (in the chunks the generator uses)
and `gen_tokens` greedy decode steps; the figures are the medians
of `repeats` rounds.

Rounds are interleaved: every backend (and the llama.cpp peer) stays loaded
in its worker, and round r runs each of them once, in an order rotated by r,
so all share the same minutes of the machine. Each backend's ratio to the
first backend (`vs_first`) and to the peer (`vs_peer`) is the median of the
per-round ratios. On a shared or thermally throttled machine speeds drift by
10-30% over minutes; measured one after the other, two backends' ratio
drifts as much. `interleave=False` (`--sequential`) loads one backend at a
time instead, for boards without the memory for all of them; it is chosen
when the backends' estimated memory does not fit (`side_by_side_bytes`).

A round gives each player one turn (`schedule`): the prompt's prefill and the decode, then, with
`depth`, decode after 64 and after `depth` tokens of context, and with `sweep`, a prefill of each prompt
length. Every measurement records the machine's load average before and after it, and `busy` runs CPU-bound
processes beside the whole benchmark (`busy`).

The machine's read bandwidth is probed in every turn, right after the decode, with the run's thread count
(`machine.BandwidthProbe`: a `max` over a 256 MiB float32 array, the best of 3 passes); the roofline
bandwidth is the fastest read of the whole run, a probe pass or a decode's own read
(`machine.roofline_bandwidth`), so that no decode can be above 100% of it. A decode reads every weight byte
once per token (`sizes.decode_bytes_per_token`; llama.cpp's: `peer.gguf_decode_bytes_per_token`).

The peer is llama.cpp's `llama-bench` on the same model converted to Q8_0
(llama.cpp's own int8 format, blocks of 32 like ours) with the same threads,
prompt and generation lengths, and `llama-cli` for decode after a long context.

Example::

    report = run_bench("smollm2-135m", backends=["onnx"], threads=2, prompt_tokens=64, gen_tokens=32)
    report["decode_tok_s"], report["roofline_fraction"]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BackendError, EdgeSDKError, InvalidArgumentError, ModelFileError
from ..plan.host import mem_available_bytes, peak_rss_bytes
from .busy import load_range
from .machine import BandwidthProbe, decode_read_gbps, read_bandwidth_gbps, roofline, roofline_bandwidth  # noqa: F401
from .peer import (find_cli, find_quantize, gguf_decode_bytes_per_token, parse_llama_bench,  # noqa: F401
                   q8_0_copy, run_llama_bench)
from .schedule import Measures, PeerRunner, ours_turn
from .summary import BASE_DEPTH, ratio, summarize_turns, versus



# ---- one backend, in this process ------------------------------------------------------------------


def _prompt_ids(vocab_size: int, n: int) -> np.ndarray:
    """A fixed pseudo-random prompt (llama-bench also prefills random tokens)."""
    return np.random.default_rng(0).integers(10, vocab_size, size=n)


def _prefill(backend: Any, ids: np.ndarray, chunk: int) -> np.ndarray:
    """The prompt in chunks of `chunk` tokens, as the generator sends it (the plan's chunk)."""
    logits = None
    for start in range(0, len(ids), chunk):
        logits = backend.forward(ids[start : start + chunk], start, last_only=True)
    return logits


class _Session:
    """One backend loaded and warmed up in this process; `round()` times one prefill and one decode run,
    `depth_round(d)` a decode after `d` tokens of context and `prefill_round(n)` an `n`-token prefill."""

    def __init__(self, model: str | None, backend: str, threads: int | None, prompt_tokens: int,
                 gen_tokens: int, schema: dict[str, Any] | None = None, depth: int | None = None,
                 sweep: Sequence[int] = ()) -> None:
        from ..api import load

        longest = max([prompt_tokens, *([depth, BASE_DEPTH] if depth else []), *sweep])
        t0 = time.perf_counter()
        self.model = load(model, backend=backend, threads=threads, ctx=longest + gen_tokens, quiet=True)
        self.load_s = time.perf_counter() - t0
        self.threads, self.prompt_tokens, self.gen_tokens = threads, prompt_tokens, gen_tokens
        self.long_ids = _prompt_ids(self.model.config.vocab_size, longest)
        self.ids = self.long_ids[:prompt_tokens]
        self.constraint: dict[str, Any] = {}
        if schema is not None:
            self.constraint = self._compile({"type": "json_schema", "json_schema": {"name": "bench", "schema": schema}})
        self.round(warm_up=True)
        if depth:
            self.depth_round(depth, warm_up=True)
        if sweep:
            self.prefill_round(max(sweep))

    def _compile(self, response_format: dict[str, Any]) -> dict[str, Any]:
        """Compile the constraint twice: the first time also builds the engine's view of the tokenizer (once per
        model); the second, with the cache emptied, is the schema's own compile time."""
        t = time.perf_counter()
        self.model.compile_constraint(response_format=response_format)
        self.first_constraint_s = time.perf_counter() - t
        self.model._constraints._cache.clear()
        t = time.perf_counter()
        self.model.compile_constraint(response_format=response_format)
        self.compile_ms = (time.perf_counter() - t) * 1e3
        return {"response_format": response_format}

    def _constrained_round(self) -> dict[str, float]:
        """Greedy decode through the generator under the schema, then unconstrained for as many tokens: tokens/s
        over sampled + forced tokens, side by side."""
        ids = [int(i) for i in self.ids]
        "".join(self.model.stream_ids(ids, max_tokens=self.gen_tokens, temperature=0, **self.constraint))
        c = dict(self.model.last_stats)
        "".join(self.model.stream_ids(ids, max_tokens=max(c["generated_tokens"], 1), temperature=0))
        u = self.model.last_stats
        return {"constrained_decode_tok_s": c["generated_tokens"] / c["decode_s"],
                "unconstrained_decode_tok_s": u["generated_tokens"] / u["decode_s"],
                "constrained_tokens": c["generated_tokens"], "forced_tokens": c["forced_tokens"],
                "constraint": c["constraint"]}

    def _decode(self, logits: np.ndarray, pos: int, steps: int) -> float:
        """Seconds for `steps` greedy decode steps from position `pos`."""
        be = self.model.backend
        t = time.perf_counter()
        for i in range(steps):
            logits = be.forward(np.array([int(logits[-1].argmax())]), pos + i, last_only=True)
        return time.perf_counter() - t

    def round(self, warm_up: bool = False) -> dict[str, float]:
        be, n = self.model.backend, self.prompt_tokens
        t = time.perf_counter()
        logits = _prefill(be, self.ids, self.model._gen.prefill_chunk)
        t_prefill = time.perf_counter() - t
        steps = min(self.gen_tokens, 4) if warm_up else self.gen_tokens
        out = {"prefill_tok_s": n / t_prefill, "decode_tok_s": steps / self._decode(logits, n, steps)}
        if self.constraint and not warm_up:
            out.update(self._constrained_round())
        return out

    def depth_round(self, depth: int, warm_up: bool = False) -> dict[str, float]:
        """Decode `gen_tokens` steps after a `depth`-token prompt (its prefill untimed here)."""
        logits = _prefill(self.model.backend, self.long_ids[:depth], self.model._gen.prefill_chunk)
        steps = min(self.gen_tokens, 4) if warm_up else self.gen_tokens
        return {"decode_tok_s": steps / self._decode(logits, depth, steps)}

    def prefill_round(self, n: int) -> dict[str, float]:
        t = time.perf_counter()
        _prefill(self.model.backend, self.long_ids[:n], self.model._gen.prefill_chunk)
        return {"prefill_tok_s": n / (time.perf_counter() - t)}

    def summary(self) -> dict[str, Any]:
        m = self.model
        out = {"backend": m.backend.name, "threads": self.threads, "load_s": self.load_s,
               "quant": m.quant.to_dict() if m.quant else None}
        if self.constraint:
            out.update(compile_ms=self.compile_ms, first_constraint_s=self.first_constraint_s)
        return out

    def close(self) -> None:
        self.model.close()


PROTOCOL = "@edge_sdk.bench.backends "  # prefix of the worker's reply lines (anything else a library prints is skipped)


class _Worker:
    """A backend loaded in its own process (`--worker`), running one timed measurement per request."""

    def __init__(self, model: str | None, backend: str, threads: int | None, prompt_tokens: int, gen_tokens: int,
                 timeout_s: float, schema: dict[str, Any] | None = None, depth: int | None = None,
                 sweep: Sequence[int] = ()) -> None:
        import tempfile

        args = {"model": model, "backend": backend, "threads": threads, "prompt_tokens": prompt_tokens,
                "gen_tokens": gen_tokens, "schema": schema, "depth": depth, "sweep": list(sweep)}
        self.name, self.timeout_s = backend, timeout_s
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a pipe could fill up and stall the worker
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_sdk.bench.backends", "--worker", json.dumps(args)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=_thread_env(threads))
        self.info = self._reply()

    def _reply(self) -> dict[str, Any]:
        import select

        deadline = time.monotonic() + self.timeout_s
        assert self.proc.stdout is not None
        while True:
            left = deadline - time.monotonic()
            ready = select.select([self.proc.stdout], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                self.kill()
                raise BackendError(f"benchmark of backend {self.name!r} gave no answer within {self.timeout_s:.0f} s")
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self.stderr.seek(0)
                raise BackendError(f"benchmark of backend {self.name!r} failed: {self.stderr.read().strip()[-1500:]}")
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL):])

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def round(self) -> dict[str, float]:
        return self._ask("round")

    def depth(self, n: int) -> dict[str, float]:
        return self._ask(f"depth {n}")

    def prefill(self, n: int) -> dict[str, float]:
        return self._ask(f"prefill {n}")

    def finish(self) -> dict[str, Any]:
        out = self._ask("end")
        self.proc.wait(timeout=self.timeout_s)
        self.stderr.close()
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _thread_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    return env


# ---- the whole benchmark ---------------------------------------------------------------------------


def prepare_package(model: str | None, info: dict[str, Any], tflite: bool = False) -> Path:
    """The converted package the backends load (converted here, once, so that no child pays for conversion)."""
    from ..importers import registry as models
    from ..model.config import QuantConfig
    from ..export.convert import cached_package, package_for

    if info["kind"] == "package":
        return Path(info["path"])
    name = model or models.DEFAULT_MODEL
    if name in models.REGISTRY:
        return cached_package(name, QuantConfig(), tflite=tflite)
    return package_for(info["path"], QuantConfig(), tflite=tflite)


def side_by_side_bytes(cfg: Any, backends: Sequence[str]) -> int:
    """Estimated resident bytes of all `backends` loaded at once, from the planner's figures."""
    from ..model.config import QuantConfig
    from ..plan.budget import BACKEND_RUNTIME_BYTES, REFERENCE_COPY_FACTOR, WEIGHT_COPY_FACTOR, runtime_bytes, tokenizer_bytes
    from ..model.sizes import model_weight_bytes

    weights = model_weight_bytes(cfg, QuantConfig())
    total = 0
    for b in backends:
        name = "native" if b == "auto" else b
        # the weights plus the runtime's copies, or the reference backends' float32 copies (both measured)
        per_byte = 1.0 + WEIGHT_COPY_FACTOR.get(name, 0.0) + REFERENCE_COPY_FACTOR.get(name, 0.0)
        total += int(weights * per_byte) + tokenizer_bytes(cfg) + runtime_bytes(
            name if name in BACKEND_RUNTIME_BYTES else "native")
    return total


def run_bench(model: str | None = None, backends: Sequence[str] = ("auto",), threads: int | None = None,
              prompt_tokens: int = 64, gen_tokens: int = 32, repeats: int = 3, peer: str | None = None,
              peer_quantize: str | None = None, interleave: bool | None = None,
              timeout_s: float = 1800, schema: dict[str, Any] | None = None, depth: int | None = None,
              sweep: Sequence[int] = (), busy: int = 0, peer_cli: str | None = None) -> dict[str, Any]:
    """Measure each backend in its own process, the bandwidth, the roofline and (with `peer`) llama.cpp.

    `depth`: also decode after a `depth`-token context and after a 64-token one (`depth` in each result: both
    medians, their per-round ratio, and, with the peer, the ratio to llama.cpp at the same depth, which is
    measured with `llama-cli`, `peer_cli` or found next to `peer`). `sweep`: also prefill each of these prompt
    lengths (`sweep` in each result). `busy`: that many CPU-bound processes run beside the whole benchmark
    (`busy.BusyLoad`). Every measurement records the load average before and after it (`loadavg_range`).

    `schema`: a JSON Schema; each round then also decodes greedily under it and, right after, unconstrained
    for as many tokens, through the generator (`constrained` in each result: tokens/s over sampled + forced
    tokens, the median per-round ratio, and the schema's compile time).

    `interleave`: True loads all backends at once and interleaves their rounds (see the module notes), False
    measures one backend after the other, None (default) interleaves when the estimated memory of all the
    backends together (`side_by_side_bytes`) fits in 80% of MemAvailable. The first backend's figures are
    repeated at the top level of the report.

    The roofline: decode as a fraction of the run's read bandwidth, the fastest read of the run
    (`machine.roofline_bandwidth`), so that no fraction can exceed 100%; `bandwidth_source` says whether that
    was a probe pass or, on a machine too busy for the probe, a decode's own read.
    """
    from ..model.config import QuantConfig
    from ..model.sizes import decode_bytes_per_token
    from .busy import BusyLoad, loadavg

    if prompt_tokens < 1 or gen_tokens < 1 or repeats < 1:
        raise InvalidArgumentError("prompt_tokens, gen_tokens and repeats must be >= 1")
    from ..settings import BACKENDS, MAX_THREADS, check_count

    threads = check_count("threads", threads, MAX_THREADS)
    measures = Measures(prompt_tokens, gen_tokens, depth, tuple(sweep))
    BusyLoad(busy)  # checks the count before anything runs

    if not backends:
        raise InvalidArgumentError("no backend to measure")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise InvalidArgumentError(f"unknown backend {unknown[0]!r}; choose among {', '.join(BACKENDS)}")
    from ..export.describe import describe

    info = describe(model)
    cfg = info["config"]
    if peer:  # check before measuring anything
        if info["kind"] != "gguf":
            raise ModelFileError(f"the llama.cpp comparison needs a .gguf model, got a {info['kind']} ({info['path']})")
        if shutil.which(str(peer)) is None:
            raise BackendError(f"{peer}: llama-bench not found or not executable")
        quantize = find_quantize(peer, peer_quantize)
        cli = find_cli(peer, peer_cli) if depth else None
    package = str(prepare_package(model, info, tflite="tflite" in backends))
    n_threads = threads or os.cpu_count() or 1
    probe = BandwidthProbe(n_threads)
    runner = None
    if peer:
        from ..importers.gguf_vocab import tokenizer_from_gguf

        q8 = q8_0_copy(info["path"], quantize)
        runner = PeerRunner(str(peer), str(q8), n_threads, measures, str(cli) if cli else None,
                            tokenizer_from_gguf(info["path"]) if depth else None)
    sources = [str(info["path"]) if name == "float" else package for name in backends]
    schedule_note = ""
    if interleave is None:
        need, avail = side_by_side_bytes(cfg, backends), mem_available_bytes()
        interleave = avail is None or need <= 0.8 * avail
        if not interleave:
            schedule_note = (f"sequential: the backends together need about {need / 2**20:.0f} MiB, more than 80% of "
                             f"the {avail / 2**20:.0f} MiB available")
    idle_load = loadavg()
    try:
        with BusyLoad(busy):
            results, peer_turns = _measure(sources, backends, threads, measures, repeats, runner, timeout_s,
                                           interleave, probe, schema)
    finally:
        if runner:
            runner.close()
    peer_row = summarize_turns(peer_turns, depth, measures.sweep) if runner else None
    # the run's bandwidth: the fastest read of any probe pass or any decode (so no fraction can exceed 100%)
    for r in results:
        q = QuantConfig.from_dict(r["quant"]) if r.get("quant") else None
        r["decode_bytes_per_token"] = decode_bytes_per_token(cfg, q) if q else None
    if peer_row is not None:
        peer_row["decode_bytes_per_token"] = gguf_decode_bytes_per_token(runner.q8)
    rows = results + ([peer_row] if peer_row else [])
    bound = roofline_bandwidth([bw for r in rows for bw in r["bandwidth_runs"]],
                               [decode_read_gbps(d, r["decode_bytes_per_token"]) for r in rows
                                if r["decode_bytes_per_token"] for d in r["decode_runs"]])
    for r in rows:
        roof = roofline(r["decode_runs"], r["decode_bytes_per_token"], bound["gbps"]) \
            if r["decode_bytes_per_token"] else None
        r["roofline_decode_tok_s"] = roof["roofline_decode_tok_s"] if roof else None
        r["roofline_fraction"] = roof["fraction"] if roof else None
        r["roofline_fraction_range"] = roof["fraction_range"] if roof else None
    for r in results:
        r["vs_first"] = {k: ratio(r, results[0], f"{k}_tok_s", interleave) for k in ("prefill", "decode")}
    report: dict[str, Any] = {
        "model": str(info["path"]), "threads": n_threads, "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens,
        "repeats": repeats, "schedule": "interleaved" if interleave else "sequential",
        "depth": depth, "sweep": list(measures.sweep), "busy": busy, "loadavg_idle": idle_load,
        "loadavg_range": load_range([{"loadavg": la} for r in rows for la in r["loadavg_runs"] if la]),
        "bandwidth_gbps": bound["gbps"], "bandwidth_source": bound["source"], "probe_gbps": bound["probe_gbps"],
        "bandwidth_range_gbps": bound["probe_range_gbps"], "decode_max_read_gbps": bound["decode_max_gbps"],
        "bandwidth_threads": probe.threads,
    }
    if schedule_note:
        report["schedule_note"] = schedule_note
    if peer_row is not None:
        report["peer"] = {"name": "llama.cpp Q8_0", "model": runner.q8, "command": runner.command, **peer_row}
        if depth:
            report["peer"]["depth_command"] = runner.depth_command
        for r in results:
            versus(r, report["peer"], paired=interleave)
    report.update({k: v for k, v in results[0].items() if k not in ("threads", "depth", "sweep")})
    report["results"] = results
    return report


def _measure(sources: Sequence[str], backends: Sequence[str], threads: int | None, m: Measures, repeats: int,
             peer: PeerRunner | None, timeout_s: float, interleave: bool, probe: BandwidthProbe,
             schema: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each backend in its worker; `repeats` turns each (`schedule`), and the peer's turns.

    Interleaved: all workers loaded (one after the other, so each load's peak is its own), then round r gives
    each backend and the peer one turn, in an order rotated by r. Sequential: one worker at a time runs all its
    turns and ends before the next loads; then the peer has one turn in which llama-bench repeats each test
    `repeats` times (and llama-cli runs `repeats` times for depth).
    """
    results: list[dict[str, Any]] = []
    peer_turns: list[dict[str, Any]] = []
    workers: list[_Worker] = []

    def start(src: str, name: str) -> _Worker:
        return _Worker(src, name, threads, m.prompt_tokens, m.gen_tokens, timeout_s, schema, m.depth, m.sweep)

    def row(w: _Worker, turns: list[dict[str, Any]]) -> dict[str, Any]:
        return {**w.info, **summarize_turns(turns, m.depth, m.sweep, m.base_depth), **w.finish()}

    try:
        if not interleave:
            for src, name in zip(sources, backends):
                workers = [start(src, name)]
                results.append(row(workers[0], [ours_turn(workers[0], m, probe) for _ in range(repeats)]))
            if peer:
                turn = peer.turn(repeats, probe)
                if m.depth:
                    turn["depth"] = _median_turn([turn["depth"]] + [peer.depth_turn() for _ in range(repeats - 1)])
                peer_turns.append(turn)
            return results, peer_turns
        workers = [start(src, name) for src, name in zip(sources, backends)]
        turns: list[list[dict[str, Any]]] = [[] for _ in workers]
        players = list(range(len(workers))) + ([-1] if peer else [])
        for r in range(repeats):
            for p in players[r % len(players):] + players[: r % len(players)]:
                if p < 0:
                    assert peer is not None
                    peer_turns.append(peer.turn(1, probe))
                else:
                    turns[p].append(ours_turn(workers[p], m, probe))
        results = [row(w, t) for w, t in zip(workers, turns)]
        return results, peer_turns
    finally:
        for w in workers:
            w.kill()


def _median_turn(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure of several measurements (the sequential schedule's peer depth)."""
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "loadavg"}
    return {**out, "loadavg": load_range(runs)}


def _worker(arg: str) -> int:
    """The worker's side of `_Worker`: load, reply, then answer "round" and "end" lines on stdin."""
    def reply(obj: dict[str, Any]) -> None:
        print(PROTOCOL + json.dumps(obj), flush=True)

    try:
        session = _Session(**json.loads(arg))
    except (EdgeSDKError, ValueError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    reply(session.summary())
    for line in sys.stdin:
        command = line.strip()
        if command == "round":
            reply(session.round())
        elif command.startswith(("depth ", "prefill ")):
            what, n = command.split()
            reply(session.depth_round(int(n)) if what == "depth" else session.prefill_round(int(n)))
        elif command == "end":
            session.close()
            reply({"peak_rss_bytes": peak_rss_bytes()})
            return 0
        else:
            print(f"unknown command {command!r}", file=sys.stderr)
            return 2
    session.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2]))
    print("usage: python -m edge_sdk.bench.backends --worker JSON (use `edge-sdk bench`)", file=sys.stderr)
    sys.exit(2)
