"""`edge-sdk info`: what a model is, from its metadata (no weights loaded)."""

from __future__ import annotations

import argparse
import json

from ..importers.registry import DEFAULT_MODEL


def cmd(a: argparse.Namespace) -> int:
    from ..export.describe import describe
    from ..model.sizes import decode_bytes_per_token, model_weight_bytes

    d = describe(a.model)
    cfg, q = d["config"], d["quant"]
    out = {k: v for k, v in d.items() if k not in ("config", "quant", "graphs")}
    if d.get("graphs"):
        out["graphs"] = [g["name"] for g in d["graphs"]]
    out["config"] = cfg.to_dict()
    out["quant"] = q.to_dict()
    out["parameters"] = cfg.n_params()
    out["int8_weight_bytes"] = model_weight_bytes(cfg, q)
    out["int8_bytes_read_per_token"] = decode_bytes_per_token(cfg, q)
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{d['path']} ({d['kind']})")
    print(f"  {cfg.name or 'llama'}: {cfg.n_params() / 1e6:.1f} M parameters, {cfg.n_layers} layers, dim {cfg.dim}, "
          f"{cfg.n_heads} heads / {cfg.n_kv_heads} KV heads (head dim {cfg.head_dim}), FFN {cfg.ffn_dim}, vocab {cfg.vocab_size}")
    print(f"  context {cfg.max_ctx}, RoPE theta {cfg.rope_theta:g} ({cfg.rope_scaling.kind} scaling), "
          f"RMS eps {cfg.rms_eps:g}, {'tied' if cfg.tied_embeddings else 'separate'} output head")
    print(f"  int8 ({'per row' if q.group_size == 0 else f'groups of {q.group_size}'}): "
          f"{out['int8_weight_bytes'] / 2**20:.1f} MiB of weights, {out['int8_bytes_read_per_token'] / 2**20:.1f} MiB read per token")
    for key in ("tensor_types", "tokenizer_model", "tokenizer_pre"):
        if key in d:
            print(f"  {key}: {d[key]}")
    if d.get("float_reference"):
        print(f"  float reference (what int8 accuracy is measured against): {d['float_reference']}")
    gen = d.get("generation_defaults") or {}
    print(f"  sampling defaults: {', '.join(f'{k} {v}' for k, v in gen.items()) if gen else 'none in the file (greedy)'}")
    if d.get("graphs"):
        print(f"  graphs: {', '.join(g['name'] for g in d['graphs'])}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a model (config, sizes) without loading it")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd)
