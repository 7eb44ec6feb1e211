"""The peer: llama.cpp's `llama-bench` on the same model converted to Q8_0 (its own int8 format, blocks of 32
like ours), with the same threads, prompt and generation lengths.

Example::

    q8 = q8_0_copy("model.gguf", "/path/llama-quantize")
    run_llama_bench("/path/llama-bench", q8, threads=2, prompt_tokens=64, gen_tokens=32, repeats=5)
"""

from __future__ import annotations

import json
import os
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


