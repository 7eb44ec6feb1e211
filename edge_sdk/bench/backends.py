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

The machine's read bandwidth comes from a STREAM-like read
(`max` over 256 MiB int64 arrays, one slice per thread, median of 5); the
decode roofline is that bandwidth divided by the weight bytes one token reads
(`sizes.decode_bytes_per_token`).

The peer is llama.cpp's `llama-bench` on the same model converted to Q8_0
(llama.cpp's own int8 format, blocks of 32 like ours) with the same threads,
prompt and generation lengths.

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
from .machine import BandwidthProbe, read_bandwidth_gbps, roofline  # noqa: F401 (read_bandwidth_gbps: tests)
from .peer import find_quantize, parse_llama_bench, q8_0_copy, run_llama_bench  # noqa: F401



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
    """One backend loaded and warmed up in this process; `round()` times one prefill and one decode run."""

    def __init__(self, model: str | None, backend: str, threads: int | None, prompt_tokens: int,
                 gen_tokens: int, schema: dict[str, Any] | None = None) -> None:
        from ..api import load

        t0 = time.perf_counter()
        self.model = load(model, backend=backend, threads=threads, ctx=prompt_tokens + gen_tokens, quiet=True)
        self.load_s = time.perf_counter() - t0
        self.threads, self.prompt_tokens, self.gen_tokens = threads, prompt_tokens, gen_tokens
        self.ids = _prompt_ids(self.model.config.vocab_size, prompt_tokens)
        self.constraint: dict[str, Any] = {}
        if schema is not None:
            self.constraint = self._compile({"type": "json_schema", "json_schema": {"name": "bench", "schema": schema}})
        self.round(warm_up=True)

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

    def round(self, warm_up: bool = False) -> dict[str, float]:
        be, n = self.model.backend, self.prompt_tokens
        t = time.perf_counter()
        logits = _prefill(be, self.ids, self.model._gen.prefill_chunk)
        t_prefill = time.perf_counter() - t
        steps = min(self.gen_tokens, 4) if warm_up else self.gen_tokens
        t = time.perf_counter()
        for i in range(steps):
            logits = be.forward(np.array([int(logits[-1].argmax())]), n + i, last_only=True)
        t_decode = time.perf_counter() - t
        out = {"prefill_tok_s": n / t_prefill, "decode_tok_s": steps / t_decode}
        if self.constraint and not warm_up:
            out.update(self._constrained_round())
        return out

    def summary(self) -> dict[str, Any]:
        m = self.model
        out = {"backend": m.backend.name, "threads": self.threads, "load_s": self.load_s,
               "quant": m.quant.to_dict() if m.quant else None}
        if self.constraint:
            out.update(compile_ms=self.compile_ms, first_constraint_s=self.first_constraint_s)
        return out

    def close(self) -> None:
        self.model.close()


def _medians(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    prefill, decode = [r["prefill_tok_s"] for r in runs], [r["decode_tok_s"] for r in runs]
    out = {"prefill_tok_s": statistics.median(prefill), "decode_tok_s": statistics.median(decode),
           "prefill_runs": prefill, "decode_runs": decode}
    if runs and "bandwidth_gbps" in runs[0]:
        out["bandwidth_runs"] = [r["bandwidth_gbps"] for r in runs]
    if runs and "constrained_decode_tok_s" in runs[0]:
        ratios = [r["constrained_decode_tok_s"] / r["unconstrained_decode_tok_s"] for r in runs]
        out["constrained"] = {
            "decode_tok_s": statistics.median(r["constrained_decode_tok_s"] for r in runs),
            "unconstrained_decode_tok_s": statistics.median(r["unconstrained_decode_tok_s"] for r in runs),
            "ratio": statistics.median(ratios), "ratio_runs": ratios,
            "tokens": runs[0]["constrained_tokens"], "forced_tokens": runs[0]["forced_tokens"],
            "satisfied": all(r["constraint"] == "satisfied" for r in runs)}
    return out


PROTOCOL = "@edge_sdk.bench.backends "  # prefix of the worker's reply lines (anything else a library prints is skipped)


class _Worker:
    """A backend loaded in its own process (`--worker`), running one timed round per request."""

    def __init__(self, model: str | None, backend: str, threads: int | None, prompt_tokens: int, gen_tokens: int,
                 timeout_s: float, schema: dict[str, Any] | None = None) -> None:
        import tempfile

        args = {"model": model, "backend": backend, "threads": threads, "prompt_tokens": prompt_tokens,
                "gen_tokens": gen_tokens, "schema": schema}
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
              timeout_s: float = 1800, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure each backend in its own process, the bandwidth, the roofline and (with `peer`) llama.cpp.

    `schema`: a JSON Schema; each round then also decodes greedily under it and, right after, unconstrained
    for as many tokens, through the generator (`constrained` in each result: tokens/s over sampled + forced
    tokens, the median per-round ratio, and the schema's compile time).

    `interleave`: True loads all backends at once and interleaves their rounds (see the module notes), False
    measures one backend after the other, None (default) interleaves when the estimated memory of all the
    backends together (`side_by_side_bytes`) fits in 80% of MemAvailable. The first backend's figures are
    repeated at the top level of the report.
    """
    from ..model.config import QuantConfig
    from ..model.sizes import decode_bytes_per_token

    if prompt_tokens < 1 or gen_tokens < 1 or repeats < 1:
        raise InvalidArgumentError("prompt_tokens, gen_tokens and repeats must be >= 1")
    from ..settings import BACKENDS, MAX_THREADS, check_count

    threads = check_count("threads", threads, MAX_THREADS)

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
    package = str(prepare_package(model, info, tflite="tflite" in backends))
    n_threads = threads or os.cpu_count() or 1
    probe = BandwidthProbe(n_threads)
    q8 = q8_0_copy(info["path"], quantize) if peer else None
    sources = [str(info["path"]) if name == "float" else package for name in backends]
    schedule_note = ""
    if interleave is None:
        need, avail = side_by_side_bytes(cfg, backends), mem_available_bytes()
        interleave = avail is None or need <= 0.8 * avail
        if not interleave:
            schedule_note = (f"sequential: the backends together need about {need / 2**20:.0f} MiB, more than 80% of "
                             f"the {avail / 2**20:.0f} MiB available")
    results, peer_runs = _measure(sources, backends, threads, prompt_tokens, gen_tokens, repeats,
                                  (peer, q8, n_threads) if peer else None, timeout_s, interleave, probe, schema)
    all_bandwidth = [bw for r in results for bw in r["bandwidth_runs"]]
    for r in results:
        q = QuantConfig.from_dict(r["quant"]) if r.get("quant") else None
        per_token = decode_bytes_per_token(cfg, q) if q else None
        r["decode_bytes_per_token"] = per_token
        roof = roofline(r["decode_runs"], r["bandwidth_runs"], per_token) if per_token else None
        r["roofline_decode_tok_s"] = roof["roofline_decode_tok_s"] if roof else None
        r["roofline_fraction"] = roof["fraction"] if roof else None
        r["roofline_fraction_range"] = roof["fraction_range"] if roof else None
        r["roofline_suspect"] = bool(roof and roof["suspect"])
        r["vs_first"] = _ratios(r, results[0], paired=interleave)
    report: dict[str, Any] = {
        "model": str(info["path"]), "threads": n_threads, "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens,
        "repeats": repeats, "schedule": "interleaved" if interleave else "sequential",
        "bandwidth_gbps": statistics.median(all_bandwidth),
        "bandwidth_range_gbps": [min(all_bandwidth), max(all_bandwidth)],
    }
    if schedule_note:
        report["schedule_note"] = schedule_note
    if peer:
        report["peer"] = {"name": "llama.cpp Q8_0", "model": str(q8), "command": peer_runs[0]["command"]}
        if interleave:
            report["peer"].update(_medians(peer_runs))
        else:
            report["peer"].update({k: peer_runs[0][k] for k in ("prefill_tok_s", "decode_tok_s")})
        for r in results:
            r["vs_peer"] = _ratios(r, report["peer"], paired=interleave)
    report.update({k: v for k, v in results[0].items() if k not in ("threads",)})
    report["results"] = results
    return report


def _ratios(r: dict[str, Any], base: dict[str, Any], paired: bool) -> dict[str, float]:
    """r / base for prefill and decode: with `paired` rounds (run side by side), the median of the per-round
    ratios; else the ratio of the medians."""
    out = {}
    for key in ("prefill", "decode"):
        if paired:
            out[key] = statistics.median(a / b for a, b in zip(r[f"{key}_runs"], base[f"{key}_runs"], strict=True))
        else:
            out[key] = r[f"{key}_tok_s"] / base[f"{key}_tok_s"]
    return out


def _measure(sources: Sequence[str], backends: Sequence[str], threads: int | None, prompt_tokens: int,
             gen_tokens: int, repeats: int, peer: tuple[str, Path, int] | None, timeout_s: float,
             interleave: bool, probe: BandwidthProbe,
             schema: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each backend in its worker; `repeats` rounds each, and the peer's runs.

    Interleaved: all workers loaded (one after the other, so each load's peak is its own), then round r runs
    each backend and the peer once, in an order rotated by r. Sequential: one worker at a time runs all its
    rounds and ends before the next loads; then llama-bench runs its `repeats` in one call. Right after each
    backend's round the read bandwidth is measured (`bandwidth_runs`), so each round's roofline uses the
    machine of its own moment.
    """
    results: list[dict[str, Any]] = []
    peer_runs: list[dict[str, Any]] = []
    workers: list[_Worker] = []
    try:
        if not interleave:
            for src, name in zip(sources, backends):
                workers = [_Worker(src, name, threads, prompt_tokens, gen_tokens, timeout_s, schema)]
                rounds = []
                for _ in range(repeats):
                    rounds.append({**workers[0].round(), "bandwidth_gbps": probe.measure()})
                results.append({**workers[0].info, **_medians(rounds), **workers[0].finish()})
            if peer:
                peer_runs.append(run_llama_bench(*peer, prompt_tokens, gen_tokens, repeats))
            return results, peer_runs
        workers = [_Worker(src, name, threads, prompt_tokens, gen_tokens, timeout_s, schema)
                   for src, name in zip(sources, backends)]
        runs: list[list[dict[str, float]]] = [[] for _ in workers]
        players = list(range(len(workers))) + ([-1] if peer else [])
        for r in range(repeats):
            for p in players[r % len(players):] + players[: r % len(players)]:
                if p < 0:
                    assert peer is not None
                    peer_runs.append(run_llama_bench(*peer, prompt_tokens, gen_tokens, 1))
                else:
                    runs[p].append({**workers[p].round(), "bandwidth_gbps": probe.measure()})
        results = [{**w.info, **_medians(rounds), **w.finish()} for w, rounds in zip(workers, runs)]
        return results, peer_runs
    finally:
        for w in workers:
            w.kill()


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
