"""Export graph records (`graphs/spec.py`) as ONNX models, built with `onnx.helper`.

Weights are never copied into the ONNX files: every initializer is ONNX
external data pointing at its byte range in the package's `weights.bin`
(`location`/`offset`/`length`). ONNX and ONNX Runtime both refuse external
data outside the model's own directory (a `..` in `location` is rejected as
path traversal), so the ONNX files sit next to `weights.bin` in the package
root.

Int8 linear layers (`linear_q8`) have three formulations; "nbits" is the one
the package uses:

- "nbits": `com.microsoft.MatMulNBits` with bits=8, block_size=act_block and
  accuracy_level=4. ONNX Runtime then quantizes the activations to symmetric
  int8 with one scale per block of `block_size` values and accumulates
  int8 x int8 per block, scaled by both scales: the arithmetic of
  `int8_reference.py`: one product agrees with it to 1e-6 (float summation
  order only). Fastest of the three: 40 tok/s decode, 208 tok/s prefill on
  SmolLM2-135M, one x86 thread (AVX-512 VNNI), before Q/K/V fusion.
  MatMulNBits wants unsigned weights with a zero point of 128, so the graph
  reads our int8 bytes and turns them into `q ^ 0x80` with Cast+BitwiseXor on
  the initializer; ONNX Runtime folds that once at session start and then
  packs the result into its own layout (its kernels need the packed copy, so
  the weights live in ONNX Runtime's memory, not in the memory map).
  Group scales are repeated to one per activation block (folded likewise), so
  per-row scales and groups larger than the activation block work too.
  ONNX Runtime's MLAS has these 8-bit kernels for x86 (since 1.22) and for
  ARM64 (since 1.23: `udot` with dotprod, `usdot` with i8mm), so boards with
  dotprod (Pi 5, Orin, RK3588) should follow the x86 numbers in accuracy.
  ARMv8.0 cores without dotprod (Cortex-A53/A57/A72: Pi 3, Pi 4, Zero 2 W,
  Jetson Nano) have no such kernel; expect ONNX Runtime's dequantize + float
  GEMM fallback there (float activations, much slower): the native core is
  the backend for those boards.
- "blocks": the per-block activation quantization written out in ONNX ops
  (ReduceMax(Abs), Div, Round, Clip, Cast) and a batched `MatMulInteger`
  over blocks: integer block sums identical to ours, but 3.1 tok/s decode
  and 14 tok/s prefill (13x slower: K=32 products and int32 round trips).
- "dynamic": `DynamicQuantizeLinear` + `MatMulInteger`: one asymmetric uint8
  scale for the whole activation tensor: 10.8 tok/s, and logits 10 away from
  the reference (greedy top-1 agreed on 4 of 10 prompt positions), because
  one outlier channel sets the scale for all.

The same measurement put "nbits" 0.9 and "blocks" 0.6 logits from the numpy
reference over a 10-token prefill: both at the floor that float noise sets
once int8 activations round it into whole steps (the reference's own RMSNorm
in float64 instead of float32 moves its logits by 0.88).

Linears that read the same input (Q/K/V, gate/up) become one MatMulNBits
over their stacked rows (stacked once, at session start): the activations are
quantized once and there are fewer, larger products (decode ~10% faster on
SmolLM2-135M). The packed Q|K|V goes straight into attention.

A residual add whose sum feeds the next RMSNorm becomes one
`com.microsoft.SkipSimplifiedLayerNormalization` that also outputs the sum
(two ops fewer per layer; decode ~3% faster on SmolLM2-135M).

Attention uses `com.microsoft.GroupQueryAttention` with rotary embedding
(cos/sin tables as inputs, rotate_half order) and the K/V cache of shape
(1, n_kv_heads, ctx, head_dim) as past/present: when the caller binds the
same buffer to both, the op writes the new positions in place and never
copies the cache (measured: a decode step costs the same at ctx 128, 2048
and 8192).

`merge_graphs` joins a package's graph files into one model (the backend
runs the whole model in one session); each file stays a standalone graph.

Example::

    specs = write_onnx_graphs("pkg/", build_graphs(cfg, qcfg, SplitPolicy()), cfg, qcfg)
    specs[0].file   # 'graph_embed.onnx'
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..model.config import ModelConfig, QuantConfig
from ..errors import InvalidArgumentError, UnsupportedModelError
from ..graphs.spec import GraphSpec, OpRecord, TensorRef, ValueInfo

OPSET = 18  # BitwiseXor, ReduceMean/ReduceMax with axes as input
MS_DOMAIN = "com.microsoft"
IR_VERSION = 9  # readable by onnxruntime >= 1.15
LINEAR_KINDS = ("nbits", "blocks", "dynamic")
DTYPES = {"float32": TensorProto.FLOAT, "int8": TensorProto.INT8, "int32": TensorProto.INT32, "int64": TensorProto.INT64}


def graph_file_name(spec: GraphSpec) -> str:
    return f"graph_{spec.name}.onnx"


class _Builder:
    """Collects nodes, initializers and constants for one ONNX graph."""

    def __init__(self, spec: GraphSpec) -> None:
        self.spec = spec
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.refs = {t.name: t for t in spec.tensors}
        self.consts: dict[str, str] = {}
        self.n = 0

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str] | None = None, domain: str = "",
             **attrs: Any) -> str:
        self.n += 1
        outputs = list(outputs) if outputs else [f"{op.lower()}_{self.n}"]
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=f"{op}_{self.n}", domain=domain, **attrs))
        return outputs[0]

    def const(self, value: Any, dtype: type = np.int64) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = f"{arr.dtype.name}:{arr.shape}:{arr.tobytes().hex()}"
        if key not in self.consts:
            name = f"const_{len(self.consts)}"
            self.inits.append(numpy_helper.from_array(arr, name))
            self.consts[key] = name
        return self.consts[key]

    def external(self, ref_name: str, dims: Sequence[int] | None = None, alias: str | None = None) -> str:
        """An initializer reading tensor `ref_name` from its file, optionally seen with other (same-size) dims."""
        ref: TensorRef = self.refs[ref_name]
        name = alias or ref.name
        if any(t.name == name for t in self.inits):
            return name
        dims = list(ref.shape if dims is None else dims)
        if int(np.prod(dims)) != int(np.prod(ref.shape)):
            raise InvalidArgumentError(f"{ref.name}: dims {dims} do not hold {ref.shape}")
        t = TensorProto()
        t.name = name
        t.data_type = DTYPES[ref.dtype]
        t.dims.extend(dims)
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", ref.file), ("offset", str(ref.offset)), ("length", str(ref.nbytes))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        self.inits.append(t)
        return name


# ---- ops ---------------------------------------------------------------------------------------


def _embed(b: _Builder, op: OpRecord) -> None:
    ids, q_name, s_name = op.inputs
    rows, cols = b.refs[q_name].shape
    n_groups = b.refs[s_name].shape[1]
    g = cols // n_groups
    q = b.node("Gather", [b.external(q_name), ids], axis=0)  # (1, T, cols) int8
    qf = b.node("Reshape", [b.node("Cast", [q], to=TensorProto.FLOAT), b.const([1, -1, n_groups, g])])
    s = b.node("Unsqueeze", [b.node("Gather", [b.external(s_name), ids], axis=0), b.const([-1])])  # (1, T, ng, 1)
    b.node("Reshape", [b.node("Mul", [qf, s]), b.const([1, -1, cols])], [op.outputs[0]])


def _rmsnorm(b: _Builder, op: OpRecord) -> None:
    # the pattern ONNX Runtime fuses into SimplifiedLayerNormalization
    x, w = op.inputs
    ms = b.node("ReduceMean", [b.node("Pow", [x, b.const(2.0, np.float32)]), b.const([-1])], keepdims=1)
    rms = b.node("Sqrt", [b.node("Add", [ms, b.const(op.attrs["eps"], np.float32)])])
    b.node("Mul", [b.node("Div", [x, rms]), b.external(w)], [op.outputs[0]])


def _add_rmsnorm(b: _Builder, add: OpRecord, norm: OpRecord) -> None:
    """A residual add whose sum feeds an RMSNorm, as one SkipSimplifiedLayerNormalization (sum kept as output 3)."""
    (sum_name,), (w_name,) = add.outputs, norm.inputs[1:]
    b.node("SkipSimplifiedLayerNormalization", [*add.inputs, b.external(w_name)], [norm.outputs[0], "", "", sum_name],
           domain=MS_DOMAIN, epsilon=float(norm.attrs["eps"]))


def _block_scales(b: _Builder, s_name: str, rows: int, n_groups: int, n_blocks: int, alias: str) -> str:
    """Weight scales as (rows * n_blocks,): one per activation block (repeated when a group spans several)."""
    if n_groups == n_blocks:
        return b.external(s_name, [rows * n_groups], alias=alias)
    rep = n_blocks // n_groups
    s = b.node("Unsqueeze", [b.external(s_name), b.const([-1])])  # (rows, ng, 1)
    s = b.node("Expand", [s, b.const([rows, n_groups, rep])])
    return b.node("Reshape", [s, b.const([rows * n_blocks])])


def _nbits_weights(b: _Builder, op: OpRecord) -> tuple[str, str]:
    """MatMulNBits' B (rows, n_blocks, blk) uint8 = q + 128 and scales (rows * n_blocks,), folded at session start."""
    _, q_name, s_name = op.inputs
    rows, cols, blk = op.attrs["rows"], op.attrs["cols"], op.attrs["act_block"]
    n_blocks = cols // blk
    q = b.external(q_name, [rows, n_blocks, blk], alias=q_name + ".blocks")
    u8 = b.node("BitwiseXor", [b.node("Cast", [q], to=TensorProto.UINT8), b.const(128, np.uint8)])
    s = _block_scales(b, s_name, rows, b.refs[s_name].shape[1], n_blocks, alias=s_name + ".flat")
    return u8, s


def _linear_nbits(b: _Builder, ops: Sequence[OpRecord], split: bool = True) -> str:
    """One MatMulNBits for linears that read the same input (Q/K/V, gate/up): their rows are stacked once at
    session start, and the output is split again unless `split` is False. Returns the product's name."""
    x, cols, blk = ops[0].inputs[0], ops[0].attrs["cols"], ops[0].attrs["act_block"]
    parts = [_nbits_weights(b, op) for op in ops]
    rows = [op.attrs["rows"] for op in ops]
    u8 = parts[0][0] if len(ops) == 1 else b.node("Concat", [p[0] for p in parts], axis=0)
    s = parts[0][1] if len(ops) == 1 else b.node("Concat", [p[1] for p in parts], axis=0)
    y = [ops[0].outputs[0]] if len(ops) == 1 else None
    y = b.node("MatMulNBits", [x, u8, s], y, domain=MS_DOMAIN, K=cols, N=sum(rows), bits=8, block_size=blk,
               accuracy_level=4)
    if len(ops) > 1 and split:
        b.node("Split", [y, b.const(rows)], [op.outputs[0] for op in ops], axis=-1)
    return y


def _weight_blocks(b: _Builder, op: OpRecord) -> tuple[str, str, int]:
    """q as (n_blocks, blk, rows) int8 and scales as (n_blocks, 1, rows) float (both folded at session start)."""
    _, q_name, s_name = op.inputs
    rows, cols, blk = op.attrs["rows"], op.attrs["cols"], op.attrs["act_block"]
    nb = cols // blk
    qt = b.node("Transpose", [b.external(q_name, [rows, nb, blk], alias=q_name + ".blocks")], perm=[1, 2, 0])
    s = _block_scales(b, s_name, rows, b.refs[s_name].shape[1], nb, alias=s_name + ".flat")
    st = b.node("Transpose", [b.node("Reshape", [s, b.const([rows, nb, 1])])], perm=[1, 2, 0])
    return qt, st, nb


def _x_blocks(b: _Builder, x: str, nb: int, blk: int) -> str:
    """(1, T, cols) -> (nb, T, blk)."""
    return b.node("Transpose", [b.node("Reshape", [x, b.const([-1, nb, blk])])], perm=[1, 0, 2])


def _linear_blocks(b: _Builder, op: OpRecord) -> None:
    x = op.inputs[0]
    rows, blk = op.attrs["rows"], op.attrs["act_block"]
    qt, st, nb = _weight_blocks(b, op)
    xb = _x_blocks(b, x, nb, blk)
    amax = b.node("ReduceMax", [b.node("Abs", [xb]), b.const([-1])], keepdims=1)  # (nb, T, 1)
    xs = b.node("Div", [amax, b.const(127.0, np.float32)])
    inv = b.node("Div", [b.const(127.0, np.float32), b.node("Max", [amax, b.const(1e-30, np.float32)])])
    xq = b.node("Clip", [b.node("Round", [b.node("Mul", [xb, inv])]), b.const(-127.0, np.float32),
                         b.const(127.0, np.float32)])
    acc = b.node("MatMulInteger", [b.node("Cast", [xq], to=TensorProto.INT8), qt])  # (nb, T, rows) int32
    y = b.node("Mul", [b.node("Mul", [b.node("Cast", [acc], to=TensorProto.FLOAT), xs]), st])
    y = b.node("ReduceSum", [y, b.const([0])], keepdims=0)  # (T, rows)
    b.node("Reshape", [y, b.const([1, -1, rows])], [op.outputs[0]])


def _linear_dynamic(b: _Builder, op: OpRecord) -> None:
    x = op.inputs[0]
    rows, blk = op.attrs["rows"], op.attrs["act_block"]
    qt, st, nb = _weight_blocks(b, op)
    xq, xs, xzp = (b.node("DynamicQuantizeLinear", [x], [f"{op.outputs[0]}.{s}" for s in ("xq", "xs", "xzp")]),
                   f"{op.outputs[0]}.xs", f"{op.outputs[0]}.xzp")
    acc = b.node("MatMulInteger", [_x_blocks(b, xq, nb, blk), qt, xzp])  # (nb, T, rows) int32
    y = b.node("ReduceSum", [b.node("Mul", [b.node("Cast", [acc], to=TensorProto.FLOAT), st]), b.const([0])], keepdims=0)
    b.node("Reshape", [b.node("Mul", [y, xs]), b.const([1, -1, rows])], [op.outputs[0]])


def _attention(b: _Builder, op: OpRecord, cache: dict[str, str], packed: str | None = None) -> None:
    """GroupQueryAttention; `packed` names the Q|K|V product when one MatMulNBits made all three."""
    q, k, v, past_k, past_v, pos, cos, sin = op.inputs
    if packed:
        q, k, v = packed, "", ""
    if "seqlens_k" not in cache:
        # GroupQueryAttention counts positions as "total length" (pos + T) and "seqlens_k" (pos + T - 1)
        t = b.node("Cast", [b.node("Shape", [q], start=1, end=2)], to=TensorProto.INT32)
        total = b.node("Add", [pos, t])
        cache["seqlens_k"] = b.node("Sub", [total, b.const([1], np.int32)])
        cache["total"] = b.node("Squeeze", [total, b.const([0])])
    a = op.attrs
    b.node("GroupQueryAttention", [q, k, v, past_k, past_v, cache["seqlens_k"], cache["total"], cos, sin],
           list(op.outputs), domain=MS_DOMAIN, num_heads=a["n_heads"], kv_num_heads=a["n_kv_heads"], do_rotary=1,
           rotary_interleaved=0, scale=float(1.0 / np.sqrt(a["head_dim"])))


def _same_input_runs(ops: Sequence[OpRecord]) -> list[list[OpRecord]]:
    """Consecutive ops grouped: linear_q8 ops reading the same input with the same attributes share a group."""
    runs: list[list[OpRecord]] = []
    for op in ops:
        prev = runs[-1][-1] if runs else None
        if (prev is not None and op.kind == prev.kind == "linear_q8" and op.inputs[0] == prev.inputs[0]
                and op.attrs["cols"] == prev.attrs["cols"] and op.attrs["act_block"] == prev.attrs["act_block"]):
            runs[-1].append(op)
        else:
            runs.append([op])
    return runs


def _add_ops(b: _Builder, ops: Sequence[OpRecord], linear: str, fuse: bool = True) -> None:
    lin = {"blocks": _linear_blocks, "dynamic": _linear_dynamic}.get(linear)
    cache: dict[str, str] = {}
    packed: dict[tuple[str, ...], str] = {}  # (q, k, v) value names -> their packed product
    runs = _same_input_runs(ops) if fuse and linear == "nbits" else [[op] for op in ops]
    fused_norm = None
    for i, run in enumerate(runs):
        op = run[0]
        nxt = runs[i + 1][0] if i + 1 < len(runs) else None
        if op is fused_norm:
            continue
        if fuse and op.kind == "add" and nxt is not None and nxt.kind == "rmsnorm" and nxt.inputs[0] == op.outputs[0]:
            _add_rmsnorm(b, op, nxt)
            fused_norm = nxt
        elif op.kind == "linear_q8" and lin is None:
            outs = tuple(o.outputs[0] for o in run)
            qkv = len(run) == 3 and nxt is not None and nxt.kind == "attention" and nxt.inputs[:3] == outs
            y = _linear_nbits(b, run, split=not qkv)
            if qkv:
                packed[outs] = y
        elif op.kind == "embed_q8":
            _embed(b, op)
        elif op.kind == "rmsnorm":
            _rmsnorm(b, op)
        elif op.kind == "linear_q8":
            lin(b, op)
        elif op.kind == "attention":
            _attention(b, op, cache, packed.get(tuple(op.inputs[:3])))
        elif op.kind == "add":
            b.node("Add", list(op.inputs), list(op.outputs))
        elif op.kind == "swiglu":
            gate, up = op.inputs
            b.node("Mul", [b.node("Mul", [gate, b.node("Sigmoid", [gate])]), up], list(op.outputs))
        else:
            raise UnsupportedModelError(f"graph {b.spec.name}: the ONNX exporter has no translation for op {op.kind!r}")


# ---- models ------------------------------------------------------------------------------------


def _value_info(v: ValueInfo) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(v.name, DTYPES[v.dtype], list(v.shape))


def check_exportable(q: QuantConfig) -> None:
    blk = q.act_block
    if blk < 16 or blk & (blk - 1):
        raise UnsupportedModelError(
            f"the ONNX graphs need act_block to be a power of two >= 16 (MatMulNBits block size), got {blk}")


def export_graph(spec: GraphSpec, cfg: ModelConfig, q: QuantConfig, linear: str = "nbits",
                 fuse: bool = True) -> onnx.ModelProto:
    """The ONNX model of one graph; its initializers point into the files named by `spec.tensors`.

    `fuse`: one MatMulNBits for linears that read the same input (Q/K/V, gate/up).
    """
    if linear not in LINEAR_KINDS:
        raise InvalidArgumentError(f"linear must be one of {', '.join(LINEAR_KINDS)}, got {linear!r}")
    check_exportable(q)
    b = _Builder(spec)
    _add_ops(b, spec.ops, linear, fuse)
    graph = helper.make_graph(b.nodes, spec.name, [_value_info(v) for v in spec.inputs],
                              [_value_info(v) for v in spec.outputs], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="edge_sdk", doc_string=f"{cfg.name or 'llama'} {spec.name} (int8, {linear})")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"edge_sdk.graph": spec.name, "edge_sdk.linear": linear,
                                   "edge_sdk.group_size": str(q.group_size), "edge_sdk.act_block": str(q.act_block)})
    return model


HEAD_FROM = "head_from"  # input of a merged model: the first position whose logits the head computes


def merge_graphs(models: Sequence[onnx.ModelProto], specs: Sequence[GraphSpec]) -> onnx.ModelProto:
    """One ONNX model running a package's graphs back to back (embed, layer ranges, head), for one session.

    Each graph's hidden-state output feeds the next graph's `x`; the head reads
    positions `head_from`.. of it (an int64 input of shape (1,): T-1 gives the
    last position's logits only). The model's other inputs and outputs are
    those of the graphs (`tokens`, `pos`, `cos`, `sin`, `past_*`, `present_*`,
    `logits`); every other name is prefixed with its graph's name. Initializers
    keep their external data, so the merged model is as small as its parts.
    """
    if len(models) != len(specs) or not specs or specs[0].kind != "embed" or specs[-1].kind != "head":
        raise InvalidArgumentError("merge_graphs needs the package's graphs in order: embed, layer ranges, head")
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = [numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "head_end"),
                                numpy_helper.from_array(np.array([1], np.int64), "head_axis")]
    inputs: dict[str, onnx.ValueInfoProto] = {}
    outputs: list[onnx.ValueInfoProto] = []
    hidden = ""  # the hidden states between graphs
    for model, spec in zip(models, specs):
        g = model.graph
        names = {vi.name: vi.name for vi in (*g.input, *g.output)}
        if spec.kind != "embed":
            names["x"] = hidden
        if spec.kind == "head":
            names["x"] = b_x = f"{spec.name}:x"
            nodes.append(helper.make_node("Slice", [hidden, HEAD_FROM, "head_end", "head_axis"], [b_x], name="head_from"))
        out_x = "x" if spec.kind == "embed" else "x_out"
        if spec.kind != "head":
            names[out_x] = f"{spec.name}:{out_x}"

        def rename(n: str, prefix: str = spec.name + ":", names: dict[str, str] = names) -> str:
            return names.get(n, prefix + n) if n else n

        for vi in g.input:
            if vi.name != "x" and vi.name not in inputs:
                inputs[vi.name] = vi
        outputs += [vi for vi in g.output if vi.name != out_x]
        for init in g.initializer:
            t = TensorProto()
            t.CopyFrom(init)
            t.name = rename(init.name)
            inits.append(t)
        for node in g.node:
            n = onnx.NodeProto()
            n.CopyFrom(node)
            n.name = f"{spec.name}:{node.name}"
            n.input[:] = [rename(x) for x in node.input]
            n.output[:] = [rename(x) for x in node.output]
            nodes.append(n)
        hidden = names.get(out_x, hidden)
    inputs[HEAD_FROM] = helper.make_tensor_value_info(HEAD_FROM, TensorProto.INT64, [1])
    graph = helper.make_graph(nodes, "model", list(inputs.values()), outputs, initializer=inits)
    merged = helper.make_model(graph, opset_imports=list(models[0].opset_import), producer_name="edge_sdk",
                               doc_string=" + ".join(s.name for s in specs))
    merged.ir_version = models[0].ir_version
    return merged


# ---- interfaces ----------------------------------------------------------------------------------


def model_io(cfg: ModelConfig) -> tuple[list[ValueInfo], list[ValueInfo]]:
    """The inputs and outputs of the merged model (`merge_graphs`) of this config's graphs, in order: those the
    backend binds, whatever the split into layer ranges."""
    kv = (1, cfg.n_kv_heads, "ctx", cfg.head_dim)
    half = ("ctx", cfg.head_dim // 2)
    layers = range(cfg.n_layers)
    inputs = [ValueInfo("tokens", (1, "T"), "int64"), ValueInfo("pos", (1,), "int32"),
              ValueInfo("cos", half, "float32"), ValueInfo("sin", half, "float32")]
    inputs += [ValueInfo(f"past_{kind}.{i}", kv, "float32") for i in layers for kind in ("key", "value")]
    inputs.append(ValueInfo(HEAD_FROM, (1,), "int64"))
    outputs = [ValueInfo(f"present_{kind}.{i}", kv, "float32") for i in layers for kind in ("key", "value")]
    outputs.append(ValueInfo("logits", (1, "T", cfg.vocab_size), "float32"))
    return inputs, outputs


def io_of(model: onnx.ModelProto) -> tuple[list[ValueInfo], list[ValueInfo]]:
    """A model's graph inputs and outputs; a dim is its value, its symbolic name, or None when it has neither."""
    def info(vi: onnx.ValueInfoProto) -> ValueInfo:
        t = vi.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        except Exception:  # an element type numpy has no name for (or none at all)
            dtype = f"elem_type {t.elem_type}"
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or None for d in t.shape.dim)
        return ValueInfo(vi.name, dims, dtype)

    return [info(vi) for vi in model.graph.input], [info(vi) for vi in model.graph.output]


def io_mismatch(have: tuple[Sequence[ValueInfo], Sequence[ValueInfo]],
                want: tuple[Sequence[ValueInfo], Sequence[ValueInfo]]) -> str:
    """What differs between two (inputs, outputs) interfaces, in words; "" when they are the same."""
    names = [[v.name for v in side] for side in have]
    if names != [[v.name for v in side] for side in want]:
        return f"its inputs/outputs ({', '.join(names[0]) or 'none'} -> {', '.join(names[1]) or 'none'}) are not " \
               f"{', '.join(v.name for v in want[0])} -> {', '.join(v.name for v in want[1])}"
    for h, w in zip([*have[0], *have[1]], [*want[0], *want[1]]):
        if (h.dtype, tuple(h.shape)) != (w.dtype, tuple(w.shape)):
            return f"{h.name} is {h.dtype} {list(h.shape)}, not {w.dtype} {list(w.shape)}"
    return ""


def write_onnx_graphs(out_dir: str | os.PathLike, specs: Sequence[GraphSpec], cfg: ModelConfig, q: QuantConfig,
                      linear: str = "nbits") -> list[GraphSpec]:
    """Write one ONNX file per graph into the package directory; returns the specs with `file` set."""
    out = []
    for spec in specs:
        spec = dataclasses.replace(spec, file=graph_file_name(spec))
        model = export_graph(spec, cfg, q, linear)
        onnx.save_model(model, os.path.join(os.fspath(out_dir), spec.file))
        out.append(spec)
    return out
