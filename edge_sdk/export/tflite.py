"""Export graph records (`graphs/spec.py`) as TFLite flatbuffers, without TensorFlow.

The files are written with the `tflite` package's generated builder
functions and `flatbuffers` (the package has no object API). A .tflite file
cannot point into another file, so each graph carries its own copy of the
int8 weights it reads (the package grows by about the size of `weights.bin`;
a tied head copies the embedding table into both the embed and head graphs).

Int8 linear layers (`linear_q8`) have four formulations; "segments" is the
one the package uses:

- "segments" (default): the "blocks" product below over segments of up to
  192 values (`segment_length`: the largest multiple of act_block dividing
  the row, at most `SEGMENT`) instead of 32: one activation scale per token
  and segment, and the weights quantized again per row and segment from the
  package's int8 values (`segment_weights`; kept as they are when a segment
  lies within one group, e.g. per-row scales). LiteRT's hybrid ops have one
  weight scale per output channel, so per-group scales inside a segment
  cannot be kept; K = 32 products are what makes "blocks" slow (below).
  Measured on SmolLM2-135M (XNNPACK): decode 1.4x "blocks" (0.69x the
  native core at one thread, 0.58x at two, against 0.50x and 0.44x). Over
  the first 1024 tokens of the GPL-3 text (float perplexity 19.28, the int8
  reference 19.14 with 95.1% top-1 agreement with float): "segments" 19.07
  and 92.5% agreement with float (91.3% with the reference), "blocks" 19.22
  and 96.2% (95.4%), "rows" 19.69 and 90.2% (89.2%). So "segments" trades
  about 3 points of top-1 agreement for the speed; the chat prompt of the
  tests keeps the reference's greedy tokens for 34 steps.
- "blocks": one dynamic-range (hybrid) `BATCH_MATMUL` over activation
  blocks. x (T, K) is seen as (K/act_block, T, act_block); the int8 weights
  as (K/act_block, rows, act_block) with a unit scale. The runtime quantizes
  each row of the float left operand (one token's block) to int8, accumulates
  int8 x int8 in int32 and scales by that activation scale; a `MUL` by the
  weight scales (one per block, repeated when a group spans several blocks)
  and a `SUM` over blocks finish the product. With LiteRT's builtin kernels
  the blocks are quantized symmetrically: the arithmetic of
  `int8_reference.py` up to float summation order (tiny-model logits within
  1e-6 of the reference). XNNPACK, LiteRT's default delegate, quantizes each
  block asymmetrically (scale (max - min) / 255 and a zero point) whatever
  the op's options say: the same blocks rounded differently, 0.065 on the
  tiny model's logits. SmolLM2-135M's greedy tokens equal the reference's for
  32 tokens with both (max logit difference 1.36 builtin, 1.46 XNNPACK with
  prompt chunks of 32 and 1.70 with chunks of 16, within the drift floor
  noted in `tests/test_backends_agree.py`).
- "rows": one hybrid `FULLY_CONNECTED` with per-output-channel scales; group
  weights are re-quantized per row at export, and the runtime quantizes each
  token's whole row with one scale: one outlier channel sets the activation
  scale for the row (0.36 off `int8_linear` on a 64x96 test matrix with an
  outlier, where "blocks" is exact). On SmolLM2-135M its greedy tokens leave
  the reference's at the 24th token of the chat prompt of the tests; a
  decode step takes 12.6 ms of CPU against 31 ms with "blocks".
- "groups": one hybrid per-channel `FULLY_CONNECTED` per activation block
  (`SPLIT` + FCs + `ADD_N`): the "blocks" arithmetic, one op per block.

XNNPACK takes every op of these graphs except `SPLIT_V` (each op it leaves
out splits the graph into two delegated partitions), so stacked products are
taken apart with `SPLIT` (equal parts) or `STRIDED_SLICE`.

Speed (XNNPACK, one thread, x86 AVX-512 VNNI): a 1536x576 product takes
28 us as a hybrid BATCH_MATMUL over 18 blocks (+9 us for MUL and SUM) against
11 us as one per-row FULLY_CONNECTED; a SmolLM2-135M decoder layer at T = 1
takes 0.7 ms with "blocks", 0.27 ms with "rows", about 1 ms with "groups"
(128 past positions).
Linears reading the same input (Q/K/V, gate/up) are one product over their
stacked rows, split after.

The K/V cache: a layer range reads `past_key.{i}` (1, n_kv_heads, P,
head_dim) and `past_value.{i}` stored transposed (1, n_kv_heads, head_dim, P)
for a window of P past positions, and outputs only the call's new rows
`key.{i}` (1, n_kv_heads, T, head_dim, after RoPE) and `value.{i}`
(1, n_kv_heads, head_dim, T). Attention never concatenates the past and the
new rows (that would copy the cache each call): it takes the softmax over
both parts with one shared maximum (see `_attention`). Which past positions
count comes from the `mask_past` input (T, P) and causality among the new
rows from `mask_new` (T, T), so every shape is fixed once the backend has
sized T and P: no op's output shape depends on a tensor's value. The
backend writes the new rows into its cache and into the interpreters' input
buffers in place (`tflite_backend.py`). RoPE reads `cos`/`sin` rows of the
call's positions as inputs (T, head_dim), laid out for a rotate_half product
`x * cos + concat(x2, x1) * sin` with sin's first half negated (bit-equal to
`rope.apply_rope`).

Dynamic dims: T (tokens of a call) and P are -1 in the shape signatures.

Example::

    files = write_tflite_graphs("pkg/", specs, cfg, qcfg, flatten_weights(qweights))
    files["head"]   # 'graphs/head.tflite'
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..model.config import ModelConfig, QuantConfig
from ..errors import BackendError, InvalidArgumentError, UnsupportedModelError
from ..graphs.spec import GraphSpec, OpRecord

LINEAR_KINDS = ("segments", "blocks", "rows", "groups")
DEFAULT_LINEAR = "segments"
SCHEMA_VERSION = 3
DIR = "graphs"
_TYPES = {"float32": 0, "int32": 2, "bool": 6, "int64": 4, "int8": 9}  # tflite.TensorType
_DYN = -1  # a dynamic dim in shape signatures


NEEDS = "writing .tflite graphs needs the tflite and flatbuffers packages: pip install 'edge-sdk[tflite]'"


def _mod(name: str) -> Any:
    # `tflite/__init__.py` re-exports classes under the module names; import the modules themselves
    try:
        return importlib.import_module(f"tflite.{name}")
    except ImportError as e:
        raise BackendError(f"{NEEDS} ({e})") from e


def graph_file_name(spec: GraphSpec) -> str:
    return f"{DIR}/{spec.name}.tflite"


# ---- the flatbuffer writer -----------------------------------------------------------------------


class FlatModel:
    """Tensors, constant buffers and operators of one subgraph; `serialize()` gives the .tflite bytes.

    Example::

        m = FlatModel("double")
        x, y = m.tensor("x", [1, -1], "float32"), m.tensor("y", [1, -1], "float32")
        m.op("ADD", [x, x], [y], "AddOptions")
        m.inputs, m.outputs = [x], [y]
        open("double.tflite", "wb").write(m.serialize())
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.tensors: list[dict[str, Any]] = []
        self.buffers: list[bytes] = [b""]  # buffer 0 is the empty sentinel
        self.ops: list[tuple[int, list[int], list[int], str, dict[str, Any]]] = []
        self.opcodes: dict[int, int] = {}
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self._consts: dict[tuple[str, tuple[int, ...], bytes], int] = {}
        self._names: set[str] = set()

    def tensor(self, name: str, shape: Sequence[int], dtype: str, data: np.ndarray | None = None,
               scale: Sequence[float] | None = None, qdim: int = 0) -> int:
        """A tensor (shape with -1 for dynamic dims), constant when `data` is given; int8 weights take `scale`."""
        base, n = name, 1
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        buf = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data).tobytes())
            buf = len(self.buffers) - 1
        self.tensors.append({"name": name, "shape": tuple(int(s) for s in shape), "dtype": dtype, "buffer": buf,
                             "scale": None if scale is None else [float(s) for s in scale], "qdim": qdim})
        return len(self.tensors) - 1

    def const(self, value: Any, dtype: str = "int32", name: str = "const") -> int:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.name, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.tensor(name, arr.shape, arr.dtype.name, arr)
        return self._consts[key]

    def op(self, code: str, inputs: Sequence[int], outputs: Sequence[int], options: str = "", **fields: Any) -> None:
        c = getattr(_mod("BuiltinOperator").BuiltinOperator, code)
        idx = self.opcodes.setdefault(c, len(self.opcodes))
        self.ops.append((idx, list(inputs), list(outputs), options, fields))

    # -- serialization ------------------------------------------------------------------------------
    def serialize(self, description: str = "") -> bytes:
        try:
            import flatbuffers
        except ImportError as e:
            raise BackendError(f"{NEEDS} ({e})") from e
        size = sum(len(b) + 16 for b in self.buffers) + 64 * len(self.tensors) + (1 << 16)
        b = flatbuffers.Builder(size)
        buffers = [self._buffer(b, data) for data in self.buffers]
        tensors = [self._tensor(b, t) for t in self.tensors]
        ops = [self._operator(b, *op) for op in self.ops]
        sg = _mod("SubGraph")
        subgraph = _table(b, "SubGraph", {
            "Tensors": _vector(b, sg.SubGraphStartTensorsVector, tensors),
            "Inputs": _int_vector(b, sg.SubGraphStartInputsVector, self.inputs),
            "Outputs": _int_vector(b, sg.SubGraphStartOutputsVector, self.outputs),
            "Operators": _vector(b, sg.SubGraphStartOperatorsVector, ops),
            "Name": b.CreateString(self.name),
        })
        # insertion order = opcode index; 127 in the deprecated field means "see builtin_code"
        codes = [_table(b, "OperatorCode", {"DeprecatedBuiltinCode": min(code, 127), "BuiltinCode": code, "Version": 1})
                 for code in self.opcodes]
        m = _mod("Model")
        codes_vec = _vector(b, m.ModelStartOperatorCodesVector, codes)
        subgraphs = _vector(b, m.ModelStartSubgraphsVector, [subgraph])
        buffers_vec = _vector(b, m.ModelStartBuffersVector, buffers)
        model = _table(b, "Model", {"Version": SCHEMA_VERSION, "OperatorCodes": codes_vec, "Subgraphs": subgraphs,
                                    "Description": b.CreateString(description or self.name), "Buffers": buffers_vec})
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _buffer(b: Any, data: bytes) -> int:
        vec = None
        if data:
            b.StartVector(1, len(data), 16)  # 16-byte aligned data: the kernels read it in place
            b.head = b.head - len(data)
            b.Bytes[b.head : b.head + len(data)] = data
            vec = b.EndVector()
        return _table(b, "Buffer", {"Data": vec})

    @staticmethod
    def _tensor(b: Any, t: dict[str, Any]) -> int:
        name = b.CreateString(t["name"])
        quant = None
        if t["scale"] is not None:
            quant = _table(b, "QuantizationParameters", {
                "Scale": b.CreateNumpyVector(np.asarray(t["scale"], dtype=np.float32)),
                "ZeroPoint": b.CreateNumpyVector(np.zeros(len(t["scale"]), dtype=np.int64)),
                "QuantizedDimension": t["qdim"],
            })
        dynamic = any(s < 0 for s in t["shape"])
        return _table(b, "Tensor", {
            "Shape": b.CreateNumpyVector(np.array([max(s, 1) for s in t["shape"]], dtype=np.int32)),
            "ShapeSignature": b.CreateNumpyVector(np.array(t["shape"], dtype=np.int32)) if dynamic else None,
            "Type": _TYPES[t["dtype"]],
            "Buffer": t["buffer"],
            "Name": name,
            "Quantization": quant,
        })

    @staticmethod
    def _operator(b: Any, idx: int, inputs: list[int], outputs: list[int], options: str,
                  fields: dict[str, Any]) -> int:
        opts = None
        if options:
            opts = _table(b, options, {k: b.CreateNumpyVector(np.asarray(v, np.int32)) if isinstance(v, (list, tuple))
                                       else v for k, v in fields.items()})
        om = _mod("Operator")
        return _table(b, "Operator", {
            "OpcodeIndex": idx,
            "Inputs": _int_vector(b, om.OperatorStartInputsVector, inputs),
            "Outputs": _int_vector(b, om.OperatorStartOutputsVector, outputs),
            "BuiltinOptionsType": getattr(_mod("BuiltinOptions").BuiltinOptions, options) if options else None,
            "BuiltinOptions": opts,
        })


def _table(b: Any, name: str, fields: Mapping[str, Any]) -> int:
    """The flatbuffer table `name` (a schema module of the `tflite` package) with the given fields, in order.

    Values are scalars or offsets of strings, vectors and tables already written (flatbuffers forbids
    writing those while a table is open); None leaves a field out.
    """
    mod = _mod(name)
    getattr(mod, f"{name}Start")(b)
    for key, value in fields.items():
        if value is not None:
            getattr(mod, f"{name}Add{key}")(b, value)
    return getattr(mod, f"{name}End")(b)


def _vector(b: Any, start: Any, offsets: Sequence[int]) -> int:
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _int_vector(b: Any, start: Any, values: Sequence[int]) -> int:
    start(b, len(values))
    for v in reversed(values):
        b.PrependInt32(v)
    return b.EndVector()


# ---- graph building blocks -----------------------------------------------------------------------


class _Graph:
    """A FlatModel plus the value names of a GraphSpec and the weight arrays it reads."""

    def __init__(self, spec: GraphSpec, cfg: ModelConfig, tensors: Mapping[str, np.ndarray], linear: str) -> None:
        self.m = FlatModel(spec.name)
        self.spec, self.cfg, self.linear = spec, cfg, linear
        self.w: Mapping[str, np.ndarray] = tensors  # fused products add their stacked weights to a copy
        self.values: dict[str, int] = {}
        self.shared: dict[str, int] = {}  # values computed once per graph (RoPE tables per head, attention scale)

    def new(self, name: str, shape: Sequence[int], dtype: str = "float32") -> int:
        return self.m.tensor(name, shape, dtype)

    def unary(self, code: str, x: int, name: str, shape: Sequence[int], dtype: str = "float32", options: str = "",
              **fields: Any) -> int:
        y = self.new(name, shape, dtype)
        self.m.op(code, [x], [y], options, **fields)
        return y

    def binary(self, code: str, a: int, b: int, name: str, shape: Sequence[int], dtype: str = "float32") -> int:
        y = self.new(name, shape, dtype)
        opts = {"ADD": "AddOptions", "MUL": "MulOptions", "SUB": "SubOptions", "DIV": "DivOptions"}.get(code, "")
        self.m.op(code, [a, b], [y], opts)
        return y

    def reshape(self, x: int, shape: Sequence[int], name: str) -> int:
        y = self.new(name, shape, self.m.tensors[x]["dtype"])
        self.m.op("RESHAPE", [x, self.m.const(list(shape))], [y])
        return y

    def transpose(self, x: int, perm: Sequence[int], name: str) -> int:
        shape = self.m.tensors[x]["shape"]
        y = self.new(name, [shape[p] for p in perm], self.m.tensors[x]["dtype"])
        self.m.op("TRANSPOSE", [x, self.m.const(list(perm))], [y])
        return y

    def concat(self, xs: Sequence[int], axis: int, name: str, shape: Sequence[int], dtype: str = "float32") -> int:
        y = self.new(name, shape, dtype)
        self.m.op("CONCATENATION", list(xs), [y], "ConcatenationOptions", Axis=axis)
        return y

    def weight(self, name: str, arr: np.ndarray, scale: Sequence[float] | None = None, qdim: int = 0) -> int:
        return self.m.tensor(name, arr.shape, arr.dtype.name, arr, scale=scale, qdim=qdim)


def _rmsnorm(g: _Graph, op: OpRecord, x: int, shape: Sequence[int]) -> int:
    out = op.outputs[0]
    sq = g.binary("MUL", x, x, out + ".sq", shape)
    ms = g.new(out + ".ms", [*shape[:-1], 1])
    g.m.op("MEAN", [sq, g.m.const([-1])], [ms], "ReducerOptions", KeepDims=True)
    r = g.unary("RSQRT", g.binary("ADD", ms, g.m.const(op.attrs["eps"], "float32"), out + ".mse", [*shape[:-1], 1]),
                out + ".rsqrt", [*shape[:-1], 1])
    return g.binary("MUL", g.binary("MUL", x, r, out + ".xr", shape), g.weight(op.inputs[1], g.w[op.inputs[1]]), out,
                    shape)


def _block_scales(scale: np.ndarray, n_blocks: int) -> np.ndarray:
    """(rows, n_groups) -> (rows, n_blocks): one weight scale per activation block."""
    return np.repeat(scale, n_blocks // scale.shape[1], axis=1)


def _linear_blocks(g: _Graph, op: OpRecord, x: int) -> int:
    _, q_name, s_name = op.inputs
    rows, cols, blk = op.attrs["rows"], op.attrs["cols"], op.attrs["act_block"]
    nb, out = cols // blk, op.outputs[0]
    q = np.ascontiguousarray(g.w[q_name].reshape(rows, nb, blk).transpose(1, 0, 2))  # (nb, rows, blk) int8
    ws = np.ascontiguousarray(_block_scales(g.w[s_name], nb).T[:, None, :], dtype=np.float32)  # (nb, 1, rows)
    xb = g.transpose(g.reshape(x, [_DYN, nb, blk], out + ".xb"), [1, 0, 2], out + ".xbt")  # (nb, T, blk)
    acc = g.new(out + ".acc", [nb, _DYN, rows])
    g.m.op("BATCH_MATMUL", [xb, g.weight(q_name, q, scale=[1.0])], [acc], "BatchMatMulOptions", AdjX=False, AdjY=True,
           AsymmetricQuantizeInputs=False)
    y = g.binary("MUL", acc, g.weight(s_name, ws), out + ".scaled", [nb, _DYN, rows])
    s = g.new(out + ".sum", [_DYN, rows])
    g.m.op("SUM", [y, g.m.const([0])], [s], "ReducerOptions", KeepDims=False)
    return g.reshape(s, [1, _DYN, rows], out)


SEGMENT = 192
"""Longest activation segment of the "segments" product (a multiple of act_block dividing the row length)."""


def segment_length(cols: int, act_block: int, target: int = SEGMENT) -> int:
    """The largest multiple of `act_block` that divides `cols` and is at most `target` (act_block at least)."""
    return max(n for n in range(act_block, max(target, act_block) + 1, act_block) if cols % n == 0)


def segment_weights(q: np.ndarray, scale: np.ndarray, seg: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights (rows, cols) with group scales (rows, n_groups) as (rows, cols) int8 and (rows, cols/seg) scales.

    Unchanged when every segment lies inside one group (per-row scales, or groups that are multiples of `seg`);
    otherwise each segment of each row is quantized again from the dequantized weights (symmetric, max/127).
    """
    rows, cols = q.shape
    ng = scale.shape[1]
    if (cols // ng) % seg == 0:
        return q, np.repeat(scale, cols // seg // ng, axis=1).astype(np.float32)
    w = (q.reshape(rows, ng, -1).astype(np.float32) * scale[..., None]).reshape(rows, cols // seg, seg)
    sc = (np.abs(w).max(axis=2) / 127.0).astype(np.float32)
    inv = np.divide(1.0, sc, out=np.zeros_like(sc), where=sc > 0)
    q2 = np.clip(np.rint(w * inv[..., None]), -127, 127).astype(np.int8)
    return q2.reshape(rows, cols), np.where(sc > 0, sc, 1.0).astype(np.float32)


def _linear_segments(g: _Graph, op: OpRecord, x: int) -> int:
    """The "blocks" product over segments of `segment_length` values (default formulation; see the module notes)."""
    _, q_name, s_name = op.inputs
    seg = segment_length(op.attrs["cols"], op.attrs["act_block"])
    q, scale = segment_weights(g.w[q_name], g.w[s_name], seg)
    seg_q, seg_s = f"{q_name}.seg{seg}", f"{s_name}.seg{seg}"
    g.w = {**g.w, seg_q: q, seg_s: scale}
    return _linear_blocks(g, OpRecord(op.kind, (op.inputs[0], seg_q, seg_s), op.outputs, {**op.attrs, "act_block": seg}), x)


def _fc(g: _Graph, x: int, q: np.ndarray, scale: np.ndarray, name: str, shape: Sequence[int]) -> int:
    y = g.new(name, shape)
    w = g.weight(name + ".w", np.ascontiguousarray(q), scale=scale, qdim=0)
    g.m.op("FULLY_CONNECTED", [x, w, -1], [y], "FullyConnectedOptions", KeepNumDims=True,
           AsymmetricQuantizeInputs=False)
    return y


def _linear_rows(g: _Graph, op: OpRecord, x: int) -> int:
    _, q_name, s_name = op.inputs
    rows, cols = op.attrs["rows"], op.attrs["cols"]
    ng = g.w[s_name].shape[1]
    w = (g.w[q_name].reshape(rows, ng, -1).astype(np.float32) * g.w[s_name][..., None]).reshape(rows, cols)
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    q = np.clip(np.rint(w * inv[:, None]), -127, 127).astype(np.int8)
    return _fc(g, x, q, np.where(scale > 0, scale, 1.0), op.outputs[0], [1, _DYN, rows])


def _linear_groups(g: _Graph, op: OpRecord, x: int) -> int:
    _, q_name, s_name = op.inputs
    rows, cols, blk = op.attrs["rows"], op.attrs["cols"], op.attrs["act_block"]
    nb, out = cols // blk, op.outputs[0]
    ws = _block_scales(g.w[s_name], nb)
    parts = [g.new(f"{out}.x{b}", [1, _DYN, blk]) for b in range(nb)]
    g.m.op("SPLIT", [g.m.const(2), x], parts, "SplitOptions", NumSplits=nb)
    ys = [_fc(g, parts[b], g.w[q_name][:, b * blk:(b + 1) * blk], np.where(ws[:, b] > 0, ws[:, b], 1.0),
              f"{out}.y{b}", [1, _DYN, rows]) for b in range(nb)]
    if nb == 1:
        return ys[0]
    y = g.new(out, [1, _DYN, rows])
    g.m.op("ADD_N", ys, [y])
    return y


LINEARS = {"segments": _linear_segments, "blocks": _linear_blocks, "rows": _linear_rows, "groups": _linear_groups}


def _embed(g: _Graph, op: OpRecord, ids: int) -> int:
    _, q_name, s_name = op.inputs
    table, scale = g.w[q_name], g.w[s_name]
    rows, cols = table.shape
    ng = scale.shape[1]
    q = g.new("rows.q", [1, _DYN, cols], "int8")
    g.m.op("GATHER", [g.weight(q_name, table), ids], [q], "GatherOptions", Axis=0)
    qf = g.reshape(g.unary("CAST", q, "rows.f", [1, _DYN, cols]), [1, _DYN, ng, cols // ng], "rows.groups")
    s = g.new("rows.scale", [1, _DYN, ng])
    g.m.op("GATHER", [g.weight(s_name, scale), ids], [s], "GatherOptions", Axis=0)
    y = g.binary("MUL", qf, g.reshape(s, [1, _DYN, ng, 1], "rows.scale4"), "x.groups", [1, _DYN, ng, cols // ng])
    return g.reshape(y, [1, _DYN, cols], op.outputs[0])


def _attention_shared(g: _Graph) -> dict[str, int]:
    """Values every layer of a range reuses: RoPE tables per head, the constants of attention."""
    if not g.shared:
        hd = g.cfg.head_dim
        g.shared.update(
            cos=g.reshape(g.values["cos"], [_DYN, 1, hd], "cos.heads"),  # (T, 1, head_dim)
            sin=g.reshape(g.values["sin"], [_DYN, 1, hd], "sin.heads"),
            scale=g.m.const(1.0 / np.sqrt(hd), "float32"),
        )
    return g.shared


def _rope(g: _Graph, x: int, n_heads: int, name: str) -> int:
    """rotate_half RoPE on x (T, n_heads, head_dim): x * cos + concat(x2, x1) * sin (sin's first half negated)."""
    hd, sh = g.cfg.head_dim, g.shared
    shape = [_DYN, n_heads, hd]
    halves = [g.new(f"{name}.h{i}", [_DYN, n_heads, hd // 2]) for i in range(2)]
    g.m.op("SPLIT", [g.m.const(2), x], halves, "SplitOptions", NumSplits=2)
    rot = g.concat([halves[1], halves[0]], 2, name + ".rot", shape)
    return g.binary("ADD", g.binary("MUL", x, sh["cos"], name + ".c", shape),
                    g.binary("MUL", rot, sh["sin"], name + ".s", shape), name + ".rope", shape)


def _scores(g: _Graph, q: int, keys: int, mask: int, name: str, n: int) -> int:
    """(rep, kvh, T, n) = q . keys^T / sqrt(head_dim) + mask."""
    rep, kvh = g.cfg.n_heads // g.cfg.n_kv_heads, g.cfg.n_kv_heads
    shape = [rep, kvh, _DYN, n]
    s = g.new(name + ".qk", shape)
    g.m.op("BATCH_MATMUL", [q, keys], [s], "BatchMatMulOptions", AdjX=False, AdjY=True)
    return g.binary("ADD", g.binary("MUL", s, g.shared["scale"], name + ".scaled", shape), mask, name, shape)


def _attention(g: _Graph, op: OpRecord) -> None:
    """Causal GQA of the call's T queries over the past cache and the call's own K/V rows.

    The past and the new rows are never concatenated (that would copy the
    cache): the softmax is taken over both parts with one shared maximum,
    exp(s - max) of each part times its values, divided by the summed weights.
    Masks come from the backend: `mask_past` (T, ctx) is 0 for filled
    positions and -inf elsewhere, `mask_new` (T, T) is the causal triangle.
    """
    q_in, k_in, v_in, past_k, past_v = op.inputs[:5]
    out, present_k, present_v = op.outputs
    layer = present_k.rsplit(".", 1)[1]
    cfg, m = g.cfg, g.m
    _attention_shared(g)  # RoPE tables per head and the scale, read by _rope and _scores
    h, kvh, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    rep = h // kvh
    q = _rope(g, g.reshape(g.values[q_in], [_DYN, h, hd], out + ".q3"), h, out + ".q")
    k = _rope(g, g.reshape(g.values[k_in], [_DYN, kvh, hd], out + ".k3"), kvh, out + ".k")
    v = g.reshape(g.values[v_in], [_DYN, kvh, hd], out + ".v3")
    new_k = g.reshape(g.transpose(k, [1, 0, 2], f"key.{layer}.t"), [1, kvh, _DYN, hd], f"key.{layer}")
    new_v = g.reshape(g.transpose(v, [1, 2, 0], f"value.{layer}.t"), [1, kvh, hd, _DYN], f"value.{layer}")
    # query head j*rep + r reads kv head j: (rep, kvh, T, hd) broadcasts over the caches' leading 1
    qg = g.transpose(g.reshape(q, [_DYN, kvh, rep, hd], out + ".qg"), [2, 1, 0, 3], out + ".qgt")
    s_past = _scores(g, qg, g.values[past_k], g.values["mask_past"], out + ".s_past", _DYN)
    s_new = _scores(g, qg, new_k, g.values["mask_new"], out + ".s_new", _DYN)
    col = [rep, kvh, _DYN, 1]
    maxes = []
    for s_i, part in ((s_past, "past"), (s_new, "new")):
        mx = g.new(f"{out}.max_{part}", col)
        m.op("REDUCE_MAX", [s_i, m.const([-1])], [mx], "ReducerOptions", KeepDims=True)
        maxes.append(mx)
    top = g.binary("MAXIMUM", maxes[0], maxes[1], out + ".max", col)
    acc, den = [], []
    for s_i, vals, part in ((s_past, g.values[past_v], "past"), (s_new, new_v, "new")):
        shape = [rep, kvh, _DYN, _DYN]
        e = g.unary("EXP", g.binary("SUB", s_i, top, f"{out}.d_{part}", shape), f"{out}.e_{part}", shape)
        sm = g.new(f"{out}.sum_{part}", col)
        m.op("SUM", [e, m.const([-1])], [sm], "ReducerOptions", KeepDims=True)
        den.append(sm)
        o = g.new(f"{out}.o_{part}", [rep, kvh, _DYN, hd])
        m.op("BATCH_MATMUL", [e, vals], [o], "BatchMatMulOptions", AdjX=False, AdjY=True)
        acc.append(o)
    o = g.binary("ADD", acc[0], acc[1], out + ".o", [rep, kvh, _DYN, hd])
    o = g.binary("DIV", o, g.binary("ADD", den[0], den[1], out + ".den", col), out + ".norm", [rep, kvh, _DYN, hd])
    o = g.transpose(o, [2, 1, 0, 3], out + ".ot")  # (T, kvh, rep, hd)
    g.values[out] = g.reshape(o, [1, _DYN, h * hd], out)
    g.values[present_k] = g.values[f"key.{layer}"] = new_k
    g.values[present_v] = g.values[f"value.{layer}"] = new_v


def _same_input_runs(ops: Sequence[OpRecord]) -> list[list[OpRecord]]:
    """Ops in order, consecutive linear_q8 ops that read the same input grouped (Q/K/V, gate/up)."""
    runs: list[list[OpRecord]] = []
    for op in ops:
        prev = runs[-1][-1] if runs else None
        if (prev is not None and op.kind == prev.kind == "linear_q8" and op.inputs[0] == prev.inputs[0]
                and op.attrs["cols"] == prev.attrs["cols"]):
            runs[-1].append(op)
        else:
            runs.append([op])
    return runs


def _linear_fused(g: _Graph, ops: list[OpRecord], x: int) -> None:
    """Linears reading the same input as one product over their stacked rows, split after (SPLIT_V)."""
    lin = LINEARS[g.linear]
    if len(ops) == 1:
        g.values[ops[0].outputs[0]] = lin(g, ops[0], x)
        return
    prefix = ops[0].inputs[1].rsplit(".", 2)[0]  # "layers.3"
    name = prefix + "." + "+".join(op.inputs[1].rsplit(".", 2)[1] for op in ops)  # "layers.3.wq+wk+wv"
    rows = [op.attrs["rows"] for op in ops]
    g.w = {**g.w, name + ".q": np.concatenate([g.w[op.inputs[1]] for op in ops]),
           name + ".scale": np.concatenate([g.w[op.inputs[2]] for op in ops])}
    fused = OpRecord("linear_q8", (ops[0].inputs[0], name + ".q", name + ".scale"), (name + ".y",),
                     {**ops[0].attrs, "rows": sum(rows)})
    y = lin(g, fused, x)
    outs = [g.new(op.outputs[0], [1, _DYN, r]) for op, r in zip(ops, rows)]
    if len(set(rows)) == 1:
        g.m.op("SPLIT", [g.m.const(2), y], outs, "SplitOptions", NumSplits=len(ops))
    else:  # not SPLIT_V: XNNPACK does not take it, and each op it leaves out splits the graph in two
        for out, start, r in zip(outs, np.cumsum([0, *rows[:-1]]), rows):
            g.m.op("STRIDED_SLICE", [y, g.m.const([0, 0, int(start)]), g.m.const([1, 0, int(start + r)]), g.m.const([1, 1, 1])],
                   [out], "StridedSliceOptions", BeginMask=0, EndMask=2)  # T: all rows (end mask on axis 1)
    for op, out in zip(ops, outs):
        g.values[op.outputs[0]] = out


def _add_ops(g: _Graph, ops: Sequence[OpRecord]) -> None:
    for run in _same_input_runs(ops):
        op = run[0]
        if op.kind == "attention":
            _attention(g, op)
            continue
        x = g.values[op.inputs[0]]
        shape = g.m.tensors[x]["shape"]
        if op.kind == "linear_q8":
            _linear_fused(g, run, x)
            continue
        if op.kind == "embed_q8":
            y = _embed(g, op, x)
        elif op.kind == "rmsnorm":
            y = _rmsnorm(g, op, x, shape)
        elif op.kind == "add":
            y = g.binary("ADD", x, g.values[op.inputs[1]], op.outputs[0], shape)
        elif op.kind == "swiglu":
            gate, up = x, g.values[op.inputs[1]]
            silu = g.binary("MUL", gate, g.unary("LOGISTIC", gate, op.outputs[0] + ".sig", shape),
                            op.outputs[0] + ".silu", shape)
            y = g.binary("MUL", silu, up, op.outputs[0], shape)
        else:
            raise UnsupportedModelError(f"graph {g.spec.name}: the TFLite exporter has no translation for op {op.kind!r}")
        g.values[op.outputs[0]] = y


# ---- models --------------------------------------------------------------------------------------


def graph_io(spec: GraphSpec, cfg: ModelConfig) -> tuple[list[tuple[str, list[int], str]], list[tuple[str, list[int], str]]]:
    """The .tflite graph's inputs and outputs (name, shape with -1 for T/ctx, dtype), in order."""
    d, kvh, hd = cfg.dim, cfg.n_kv_heads, cfg.head_dim
    if spec.kind == "embed":
        return [("tokens", [1, _DYN], "int32")], [("x", [1, _DYN, d], "float32")]
    if spec.kind == "head":
        return [("x", [1, _DYN, d], "float32")], [("logits", [1, _DYN, cfg.vocab_size], "float32")]
    layers = range(spec.first_layer, spec.end_layer)
    inputs = [("x", [1, _DYN, d], "float32"), ("mask_past", [_DYN, _DYN], "float32"),
              ("mask_new", [_DYN, _DYN], "float32"), ("cos", [_DYN, hd], "float32"), ("sin", [_DYN, hd], "float32")]
    outputs = [("x_out", [1, _DYN, d], "float32")]
    for i in layers:
        inputs += [(f"past_key.{i}", [1, kvh, _DYN, hd], "float32"), (f"past_value.{i}", [1, kvh, hd, _DYN], "float32")]
        outputs += [(f"key.{i}", [1, kvh, _DYN, hd], "float32"), (f"value.{i}", [1, kvh, hd, _DYN], "float32")]
    return inputs, outputs


def check_exportable(q: QuantConfig) -> None:
    if q.group_size and q.group_size % q.act_block:
        raise UnsupportedModelError(f"group_size {q.group_size} is not a multiple of act_block {q.act_block}")


def export_graph(spec: GraphSpec, cfg: ModelConfig, q: QuantConfig, tensors: Mapping[str, np.ndarray],
                 linear: str = DEFAULT_LINEAR) -> bytes:
    """The .tflite bytes of one graph; `tensors` maps the spec's tensor names to arrays (`flatten_weights`)."""
    if linear not in LINEAR_KINDS:
        raise InvalidArgumentError(f"linear must be one of {', '.join(LINEAR_KINDS)}, got {linear!r}")
    check_exportable(q)
    g = _Graph(spec, cfg, tensors, linear)
    inputs, outputs = graph_io(spec, cfg)
    for name, shape, dtype in inputs:
        g.values[name] = g.new(name, shape, dtype)
    g.m.inputs = [g.values[name] for name, _, _ in inputs]
    _add_ops(g, spec.ops)
    for name, _, _ in outputs:
        g.m.tensors[g.values[name]]["name"] = name
    g.m.outputs = [g.values[name] for name, _, _ in outputs]
    return g.m.serialize(f"edge_sdk {cfg.name or 'llama'} {spec.name} (int8, {linear}, act_block {q.act_block})")


def write_tflite_graphs(out_dir: str | os.PathLike, specs: Sequence[GraphSpec], cfg: ModelConfig, q: QuantConfig,
                        tensors: Mapping[str, np.ndarray], linear: str = DEFAULT_LINEAR) -> dict[str, str]:
    """Write one .tflite file per graph under `out_dir/graphs/`; returns graph name -> relative path."""
    os.makedirs(os.path.join(os.fspath(out_dir), DIR), exist_ok=True)
    files = {}
    for spec in specs:
        rel = graph_file_name(spec)
        data = export_graph(spec, cfg, q, tensors, linear)
        with open(os.path.join(os.fspath(out_dir), rel), "wb") as f:
            f.write(data)
        files[spec.name] = rel
    return files
