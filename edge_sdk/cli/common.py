"""Arguments shared by several sub-commands; sampling flags carry the API's names."""

from __future__ import annotations

import argparse
from typing import Any

from ..settings import BACKENDS, KV_CHOICES


def add_model_args(p: argparse.ArgumentParser, backend: bool = True) -> None:
    p.add_argument("-m", "--model", default=None, help="registered name (default smollm2-135m), .gguf file, Hugging Face directory or package")
    if backend:
        p.add_argument("--backend", default="auto", choices=BACKENDS)
        p.add_argument("--threads", type=int, default=None, help="threads for the native, ONNX and TFLite backends")
        p.add_argument("--ctx", type=int, default=None,
                       help="context length (default: min(model's, 2048); with --board, the largest that keeps the "
                            "weights resident, as `edge-sdk plan` shows)")
        p.add_argument("--kv", "--kv-dtype", dest="kv_dtype", default="auto", choices=KV_CHOICES,
                       help="KV cache dtype (default auto: f16 where the backend stores it, else f32; int8: one "
                            "scale per head and position, native, numpy and float backends)")
        p.add_argument("--group-size", type=int, default=32, help="int8 weight scale per group of G inputs (0: per row; default 32)")
        p.add_argument("--board", default=None, help="board profile id: plan memory for it and refuse what does not fit")


SAMPLING_HELP = ("Sampling flags left out take the model's own defaults (GGUF general.sampling.*, Hugging Face "
                 "generation_config.json; `edge-sdk info` shows them), else the values in brackets.")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    from ..model.sampling_params import SamplingParams

    d = SamplingParams()
    g = p.add_argument_group("sampling", SAMPLING_HELP)
    g.add_argument("--max-tokens", type=int, default=None, help=f"most tokens to generate [{d.max_tokens}]")
    g.add_argument("--temperature", type=float, default=None,
                   help=f"0 = greedy: the most likely token at every step, the same tokens every run [{d.temperature:g}]")
    g.add_argument("--top-k", type=int, default=None, help=f"keep the K most likely tokens; 0 = off [{d.top_k}]")
    g.add_argument("--top-p", type=float, default=None, help=f"nucleus threshold in (0, 1]; 1 = off [{d.top_p:g}]")
    g.add_argument("--min-p", type=float, default=None,
                   help=f"drop tokens below P x the most likely one's probability; 0 = off [{d.min_p:g}]")
    g.add_argument("--repetition-penalty", type=float, default=None,
                   help=f"penalty for tokens of the last --repeat-last-n; 1 = off [{d.repetition_penalty:g}]")
    g.add_argument("--repeat-last-n", type=int, default=None,
                   help=f"tokens the penalty looks back over; -1 = all, 0 = off [{d.repeat_last_n}]")
    g.add_argument("--seed", type=int, default=None, help="seed of the sampler's random numbers [from the OS]")
    g.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")


def sampling_from_args(a: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags given on the command line (None: not given, the model's default applies)."""
    return dict(max_tokens=a.max_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p,
                repetition_penalty=a.repetition_penalty, repeat_last_n=a.repeat_last_n, seed=a.seed,
                stop=tuple(a.stop) if a.stop else None)


def load_from_args(a: argparse.Namespace):
    from ..api import load

    return load(a.model, backend=a.backend, board=a.board, threads=a.threads, ctx=a.ctx, kv_dtype=a.kv_dtype,
                group_size=a.group_size, quiet=False)


def add_constraint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("constraint", "The output always matches one of these (generate/constraints.py); an "
                                          "output cut short by --max-tokens is reported and exits with status 1.")
    one = g.add_mutually_exclusive_group()
    one.add_argument("--json-schema", metavar="FILE", help="JSON valid against the JSON Schema in FILE")
    one.add_argument("--json", dest="json_object", action="store_true", help="any JSON object")
    one.add_argument("--regex", metavar="R", help="text matching the whole regular expression R")
    one.add_argument("--choice", action="append", metavar="TEXT", help="exactly one of these (repeat the flag)")
    one.add_argument("--grammar", metavar="FILE", help="text of the Lark grammar in FILE (llguidance's dialect)")


def read_json_file(path: str, what: str) -> Any:
    import json

    from ..errors import InvalidArgumentError

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise InvalidArgumentError(f"{what} {path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise InvalidArgumentError(f"{what} {path}: not valid JSON ({e})") from None


def constraint_from_args(a: argparse.Namespace) -> dict[str, Any]:
    """The constraint keyword of `generate`/`stream`/`chat` the flags ask for ({} for none)."""
    import os

    from ..errors import InvalidArgumentError

    if getattr(a, "json_schema", None):
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in os.path.splitext(os.path.basename(a.json_schema))[0])
        schema = read_json_file(a.json_schema, "--json-schema")
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name[:64] or "schema",
                                                                           "schema": schema}}}
    if getattr(a, "json_object", False):
        return {"response_format": {"type": "json_object"}}
    if getattr(a, "regex", None) is not None:
        return {"regex": a.regex}
    if getattr(a, "choice", None):
        return {"choices": list(a.choice)}
    if getattr(a, "grammar", None):
        try:
            with open(a.grammar, encoding="utf-8") as f:
                return {"grammar": f.read()}
        except OSError as e:
            raise InvalidArgumentError(f"--grammar {a.grammar}: cannot read ({e.strerror or e})") from None
    return {}


def report_incomplete(stats: dict[str, Any]) -> int:
    """Exit status 1, with why on stderr, when a constrained output ended before it was complete."""
    import sys

    if stats.get("constraint") == "incomplete":
        print(f"edge-sdk: error: the output ended ({stats.get('stop_reason')}) before it matched the constraint; "
              "it is incomplete (raise --max-tokens)", file=sys.stderr)
        return 1
    return 0