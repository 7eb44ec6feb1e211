"""The peer: llama.cpp's `llama-bench` on the same model converted to Q8_0 (its own int8 format, blocks of 32
like ours), with the same threads, prompt and generation lengths.

Example::

    q8 = q8_0_copy("model.gguf", "/path/llama-quantize")
    run_llama_bench("/path/llama-bench", q8, threads=2, prompt_tokens=64, gen_tokens=32, repeats=5)
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

from ..errors import BackendError


def find_quantize(peer: str | os.PathLike, given: str | os.PathLike | None = None) -> Path:
    """`llama-quantize`: the given path, else next to `llama-bench`."""
    path = Path(given) if given else Path(peer).resolve().parent / "llama-quantize"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BackendError(f"{path}: llama-quantize not found or not executable; give it with --peer-quantize")
    return path


def q8_0_copy(gguf: str | os.PathLike, quantize: str | os.PathLike) -> Path:
    """The model converted to Q8_0 by llama.cpp, cached in the user cache (keyed by name, size and mtime)."""
    from ..importers.registry import cache_dir

    src = Path(gguf).resolve()
    st = src.stat()
    dest = cache_dir() / "peer" / f"{src.stem}-{st.st_size}-{st.st_mtime_ns}.Q8_0.gguf"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    proc = subprocess.run([str(quantize), "--allow-requantize", str(src), str(tmp), "Q8_0"], capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.is_file():
        raise BackendError(f"llama-quantize failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    os.replace(tmp, dest)
    return dest


def parse_llama_bench(text: str) -> dict[str, float]:
    """prefill_tok_s and decode_tok_s from `llama-bench -o json` output."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise BackendError(f"llama-bench did not print JSON ({e}): {text[:300]!r}") from e
    out: dict[str, float] = {}
    for row in rows:
        # the median of the runs, like ours (llama-bench's avg_ts is their mean)
        speed = float(statistics.median(row["samples_ts"]) if row.get("samples_ts") else row["avg_ts"])
        if row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
            out["prefill_tok_s"] = speed
        elif row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
            out["decode_tok_s"] = speed
    if len(out) != 2:
        raise BackendError(f"llama-bench output lacks a prompt or a generation row: {text[:300]!r}")
    return out


def run_llama_bench(peer: str | os.PathLike, q8_gguf: str | os.PathLike, threads: int, prompt_tokens: int,
                    gen_tokens: int, repeats: int) -> dict[str, Any]:
    cmd = [str(peer), "-m", str(q8_gguf), "-t", str(threads), "-p", str(prompt_tokens), "-n", str(gen_tokens),
           "-r", str(repeats), "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackendError(f"llama-bench failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return {"command": " ".join(cmd), **parse_llama_bench(proc.stdout)}




def parse_llama_bench_rows(text: str) -> dict[str, dict[int, float]]:
    """Every test of one `llama-bench -o json` run: {"prefill": {n_prompt: tok/s}, "decode": {n_gen: tok/s}},
    each the median of its samples (`-p 16,64,512` gives one prefill test per length)."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise BackendError(f"llama-bench did not print JSON ({e}): {text[:300]!r}") from e
    out: dict[str, dict[int, float]] = {"prefill": {}, "decode": {}}
    for row in rows:
        speed = float(statistics.median(row["samples_ts"]) if row.get("samples_ts") else row["avg_ts"])
        if row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
            out["prefill"][int(row["n_prompt"])] = speed
        elif row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
            out["decode"][int(row["n_gen"])] = speed
    return out


def run_llama_bench_rows(peer: str | os.PathLike, q8_gguf: str | os.PathLike, threads: int, prompts: list[int],
                         gen_tokens: int, repeats: int = 1) -> dict[str, Any]:
    """One llama-bench run over several prompt lengths and one generation length (each test warmed up once by
    llama-bench itself)."""
    cmd = [str(peer), "-m", str(q8_gguf), "-t", str(threads), "-p", ",".join(map(str, prompts)),
           "-n", str(gen_tokens), "-r", str(repeats), "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackendError(f"llama-bench failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    rows = parse_llama_bench_rows(proc.stdout)
    missing = [n for n in prompts if n not in rows["prefill"]] + ([] if gen_tokens in rows["decode"] else [gen_tokens])
    if missing:
        raise BackendError(f"llama-bench output lacks the tests {missing}: {proc.stdout[:300]!r}")
    return {"command": " ".join(cmd), **rows}


def find_cli(peer: str | os.PathLike, given: str | os.PathLike | None = None) -> Path:
    """`llama-cli`: the given path, else next to `llama-bench`."""
    path = Path(given) if given else Path(peer).resolve().parent / "llama-cli"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BackendError(f"{path}: llama-cli not found or not executable; give it with --peer-cli")
    return path


_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_EVAL = re.compile(r"(?<!prompt )eval time =\s*([\d.]+) ms /\s*(\d+) runs")


def parse_llama_cli_timings(text: str) -> dict[str, float]:
    """llama.cpp's own timings printed by `llama-cli` at exit (`llama_perf_context_print`): the prompt's tokens and
    prefill tok/s, and the decode tok/s after it (its `eval time`, which excludes sampling)."""
    p, e = _PROMPT_EVAL.search(text), _EVAL.search(text)
    if not p or not e or float(e[1]) <= 0 or float(p[1]) <= 0:
        raise BackendError(f"llama-cli printed no prompt and eval timings: {text.strip()[-600:]!r}")
    return {"prompt_tokens": int(p[2]), "prefill_tok_s": int(p[2]) / (float(p[1]) / 1e3),
            "decode_steps": int(e[2]), "decode_tok_s": int(e[2]) / (float(e[1]) / 1e3)}


def run_llama_cli_depth(cli: str | os.PathLike, q8_gguf: str | os.PathLike, threads: int, prompt_file: str | os.PathLike,
                        gen_tokens: int, ctx: int) -> dict[str, Any]:
    """Decode tok/s of llama.cpp after the prompt in `prompt_file` (greedy, EOS ignored, so `gen_tokens` are made).

    llama-bench (at the pinned commit) has no depth option; its `-pg` test times prefill and decode together, so
    decode alone would be the difference of two noisy times. `llama-cli` prints llama.cpp's own timing of the
    decode steps after the prompt."""
    cmd = [str(cli), "-m", str(q8_gguf), "-t", str(threads), "-c", str(ctx), "-n", str(gen_tokens),
           "-f", str(prompt_file), "-no-cnv", "--temp", "0", "--ignore-eos", "-s", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BackendError(f"llama-cli failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return {"command": " ".join(cmd), **parse_llama_cli_timings(proc.stderr)}


def text_of_tokens(tokenizer: Any, n: int) -> str:
    """A plain English text that `tokenizer` (ours, which gives llama.cpp's ids) reads as `n` tokens, or as close
    below as a cut between tokens allows (the peer reports the count it read)."""
    sentence = ("The robot reads its instructions before it moves: the rooms, the objects it may carry, the speed "
                "near people, and what to say when a path is blocked. ")
    text, i = "", 0
    while len(tokenizer.encode(text)) < n + 8:
        text += f"Rule {i}. {sentence}"
        i += 1
    ids = tokenizer.encode(text)
    best = ""
    for k in range(n, max(n - 16, 0), -1):
        cut = tokenizer.decode(ids[:k])
        m = len(tokenizer.encode(cut))
        if m == n:
            return cut
        if m < n and not best:
            best = cut
    return best


def gguf_decode_bytes_per_token(gguf: str | os.PathLike) -> int:
    """Bytes llama.cpp reads to decode one token of this file: every tensor once, except that the embedding
    table is read in full only when it is also the output head (tied), else one row of it."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(gguf)).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors and "token_embd.weight" in tensors:
        total -= tensors["token_embd.weight"]  # only rows of it are read
    return total
