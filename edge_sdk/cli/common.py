"""Arguments shared by several sub-commands; sampling flags carry the API's names."""

from __future__ import annotations

import argparse
from typing import Any


def add_model_args(p: argparse.ArgumentParser, backend: bool = True) -> None:
    p.add_argument("-m", "--model", default=None, help="registered name (default smollm2-135m), .gguf file, Hugging Face directory or package")
    if backend:
        p.add_argument("--backend", default="auto", choices=("auto", "native", "numpy", "float", "onnx", "tflite"))
        p.add_argument("--threads", type=int, default=None, help="threads for the native, ONNX and TFLite backends")
        p.add_argument("--ctx", type=int, default=None, help="context length (default min(model's, 2048))")
        p.add_argument("--kv", dest="kv_dtype", default="f32", choices=("f32", "f16"), help="KV cache dtype")
        p.add_argument("--group-size", type=int, default=32, help="int8 weight scale per group of G inputs (0: per row; default 32)")
        p.add_argument("--board", default=None, help="board profile id: plan memory for it and refuse what does not fit")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")


def sampling_from_args(a: argparse.Namespace) -> dict[str, Any]:
    return dict(max_tokens=a.max_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p,
                repetition_penalty=a.repetition_penalty, seed=a.seed, stop=tuple(a.stop or ()))


def load_from_args(a: argparse.Namespace):
    from ..api import load

    return load(a.model, backend=a.backend, board=a.board, threads=a.threads, ctx=a.ctx, kv_dtype=a.kv_dtype,
                group_size=a.group_size, quiet=False)
