"""Build the graph records of a quantized LLaMA model: embed, layer ranges, head.

The split policy (`split.py`) picks the layer ranges; this module writes, for
each graph, its inputs and outputs, the weight tensors it reads (places in
`weights.bin` from `layout.weight_table`) and its ops in data-flow order.
A layer range carries the K/V cache of each of its layers as a pair of
inputs (`past_key.{i}`, `past_value.{i}`) and a pair of outputs
(`present_key.{i}`, `present_value.{i}`) of shape (1, n_kv_heads, ctx,
head_dim): the same buffer seen before and after the call, which a backend
binds once and the graph updates in place at positions pos..pos+T-1.

Example::

    specs = build_graphs(cfg, QuantConfig(group_size=32), SplitPolicy(layers_per_graph=10))
    [(s.name, s.weight_bytes) for s in specs]
"""

from __future__ import annotations

from ..model.config import ModelConfig, QuantConfig
from .layout import weight_table
from .spec import GraphSpec, OpRecord, TensorRef, ValueInfo
from .split import SplitPolicy, split_layers

LINEARS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def kv_shape(cfg: ModelConfig) -> tuple[int | str, ...]:
    return (1, cfg.n_kv_heads, "ctx", cfg.head_dim)


def _linear(table: dict[str, TensorRef], prefix: str, x: str, y: str, q: QuantConfig) -> OpRecord:
    w = table[f"{prefix}.q"]
    rows, cols = w.shape
    return OpRecord("linear_q8", (x, f"{prefix}.q", f"{prefix}.scale"), (y,),
                    {"rows": rows, "cols": cols, "group_size": q.group_size, "act_block": q.act_block})


def _tensors(table: dict[str, TensorRef], ops: list[OpRecord]) -> tuple[TensorRef, ...]:
    """The tensors the ops read, each once, in file order."""
    used = {name for op in ops for name in op.inputs if name in table}
    return tuple(t for name, t in table.items() if name in used)


def embed_graph(cfg: ModelConfig, table: dict[str, TensorRef]) -> GraphSpec:
    ops = [OpRecord("embed_q8", ("tokens", "tok_embd.q", "tok_embd.scale"), ("x",))]
    return GraphSpec(
        name="embed", kind="embed",
        inputs=(ValueInfo("tokens", (1, "T"), "int64"),),
        outputs=(ValueInfo("x", (1, "T", cfg.dim), "float32"),),
        tensors=_tensors(table, ops), ops=tuple(ops),
    )


def layer_ops(cfg: ModelConfig, q: QuantConfig, table: dict[str, TensorRef], i: int, x: str, out: str) -> list[OpRecord]:
    """The ops of decoder layer i, reading hidden states `x` and writing `out`."""
    p, v = f"layers.{i}", f"l{i}."
    lin = {name: f"{p}.{name}" for name in LINEARS}
    return [
        OpRecord("rmsnorm", (x, f"{p}.attn_norm"), (v + "xn",), {"eps": cfg.rms_eps}),
        _linear(table, lin["wq"], v + "xn", v + "q", q),
        _linear(table, lin["wk"], v + "xn", v + "k", q),
        _linear(table, lin["wv"], v + "xn", v + "v", q),
        OpRecord("attention", (v + "q", v + "k", v + "v", f"past_key.{i}", f"past_value.{i}", "pos", "cos", "sin"),
                 (v + "attn", f"present_key.{i}", f"present_value.{i}"),
                 {"n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "rope": "rotate_half"}),
        _linear(table, lin["wo"], v + "attn", v + "o", q),
        OpRecord("add", (x, v + "o"), (v + "h",)),
        OpRecord("rmsnorm", (v + "h", f"{p}.ffn_norm"), (v + "hn",), {"eps": cfg.rms_eps}),
        _linear(table, lin["w_gate"], v + "hn", v + "gate", q),
        _linear(table, lin["w_up"], v + "hn", v + "up", q),
        OpRecord("swiglu", (v + "gate", v + "up"), (v + "act",)),
        _linear(table, lin["w_down"], v + "act", v + "down", q),
        OpRecord("add", (v + "h", v + "down"), (out,)),
    ]


def layers_graph(cfg: ModelConfig, q: QuantConfig, table: dict[str, TensorRef], first: int, end: int) -> GraphSpec:
    ops: list[OpRecord] = []
    x = "x"
    for i in range(first, end):
        out = "x_out" if i == end - 1 else f"l{i}.out"
        ops += layer_ops(cfg, q, table, i, x, out)
        x = out
    half = cfg.head_dim // 2
    kv_in, kv_out = [], []
    for i in range(first, end):
        kv_in += [ValueInfo(f"past_key.{i}", kv_shape(cfg), "float32"), ValueInfo(f"past_value.{i}", kv_shape(cfg), "float32")]
        kv_out += [ValueInfo(f"present_key.{i}", kv_shape(cfg), "float32"),
                   ValueInfo(f"present_value.{i}", kv_shape(cfg), "float32")]
    return GraphSpec(
        name=f"layers_{first}_{end}", kind="layers", first_layer=first, end_layer=end,
        inputs=(ValueInfo("x", (1, "T", cfg.dim), "float32"), ValueInfo("pos", (1,), "int32"),
                ValueInfo("cos", ("ctx", half), "float32"), ValueInfo("sin", ("ctx", half), "float32"), *kv_in),
        outputs=(ValueInfo("x_out", (1, "T", cfg.dim), "float32"), *kv_out),
        tensors=_tensors(table, ops), ops=tuple(ops),
    )


def head_graph(cfg: ModelConfig, q: QuantConfig, table: dict[str, TensorRef]) -> GraphSpec:
    head = "tok_embd" if cfg.tied_embeddings else "output"
    ops = [
        OpRecord("rmsnorm", ("x", "out_norm"), ("xn",), {"eps": cfg.rms_eps}),
        _linear(table, head, "xn", "logits", q),
    ]
    return GraphSpec(
        name="head", kind="head",
        inputs=(ValueInfo("x", (1, "T", cfg.dim), "float32"),),
        outputs=(ValueInfo("logits", (1, "T", cfg.vocab_size), "float32"),),
        tensors=_tensors(table, ops), ops=tuple(ops),
    )


def build_graphs(cfg: ModelConfig, q: QuantConfig, policy: SplitPolicy = SplitPolicy()) -> list[GraphSpec]:
    """embed, then one graph per layer range of `policy`, then head."""
    table = weight_table(cfg, q)
    specs = [embed_graph(cfg, table)]
    specs += [layers_graph(cfg, q, table, a, b) for a, b in split_layers(cfg, q, policy)]
    specs.append(head_graph(cfg, q, table))
    return specs
