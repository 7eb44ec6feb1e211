"""Graph records: what one graph of the split model reads, computes and writes.

A quantized model runs as a list of graphs: `embed` (token ids -> hidden
states), one or more ranges of decoder layers, and `head` (hidden states ->
logits). A `GraphSpec` lists a graph's inputs and outputs (including, for a
layer range, the past and present K/V cache of each of its layers), the
weight tensors it reads (with their place in `weights.bin`) and its ops as
plain records. The records describe; they do not run. Every backend reads the
same list (the ONNX exporter translates the ops into ONNX nodes, the native
core runs the same ranges), and the package manifest's `graphs` entry is this
list serialized by `GraphSpec.to_dict`.

Dimension names in shapes: "T" is the number of tokens of a call, "ctx" the
context length the backend allocated.

Example::

    specs = build_graphs(cfg, QuantConfig(), SplitPolicy(layers_per_graph=8))
    [s.name for s in specs]      # ['embed', 'layers_0_8', ..., 'layers_24_30', 'head']
    specs[1].inputs[0]           # ValueInfo(name='x', shape=(1, 'T', 576), dtype='float32')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import PackageError

Dim = int | str  # a fixed size, or a symbolic name ("T", "ctx")
GRAPH_KINDS = ("embed", "layers", "head")
OP_KINDS = ("embed_q8", "rmsnorm", "linear_q8", "attention", "add", "swiglu")


def _text(d: dict[str, Any], key: str, default: str | None = None) -> str:
    """`d[key]` (or `default` when absent), which must be a string: names are compared and hashed."""
    v = d[key] if default is None else d.get(key, default)
    if not isinstance(v, str):
        raise TypeError(f"{key} should be a string, got {type(v).__name__}")
    return v


@dataclass(frozen=True)
class TensorRef:
    """A weight tensor stored in `file` (relative to the package) at byte `offset`."""

    name: str  # the manifest's tensor name, e.g. "layers.3.wq.q"
    shape: tuple[int, ...]
    dtype: str  # numpy name: "int8" or "float32"
    offset: int  # bytes from the start of `file`, a multiple of the package alignment
    nbytes: int
    file: str = "weights.bin"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "offset": self.offset,
                "nbytes": self.nbytes, "file": self.file}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorRef":
        return cls(name=_text(d, "name"), shape=tuple(int(s) for s in d["shape"]), dtype=_text(d, "dtype"),
                   offset=int(d["offset"]), nbytes=int(d["nbytes"]), file=_text(d, "file", "weights.bin"))


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy name: "float32", "int64", "int32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ValueInfo":
        return cls(name=_text(d, "name"), shape=tuple(d["shape"]), dtype=_text(d, "dtype"))


@dataclass(frozen=True)
class OpRecord:
    """One step of a graph: `kind` (one of OP_KINDS) reads `inputs` (values or tensor names), writes `outputs`.

    Kinds and their inputs -> outputs:

    - embed_q8: ids, table.q, table.scale -> x (rows of the int8 table times their scales)
    - rmsnorm: x, weight -> y; attrs eps
    - linear_q8: x, w.q, w.scale -> y; the int8 product of `int8_reference.py`; attrs rows, cols,
      group_size, act_block
    - attention: q, k, v, past_key, past_value, pos, cos, sin -> out, present_key, present_value;
      RoPE (rotate_half) on q and k, K/V written at positions pos.., causal GQA;
      attrs n_heads, n_kv_heads, head_dim
    - add: a, b -> a + b
    - swiglu: gate, up -> silu(gate) * up
    """

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "inputs": list(self.inputs), "outputs": list(self.outputs), "attrs": dict(self.attrs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OpRecord":
        return cls(kind=_text(d, "kind"), inputs=tuple(d["inputs"]), outputs=tuple(d["outputs"]), attrs=dict(d.get("attrs", {})))


@dataclass(frozen=True)
class GraphSpec:
    """One graph of the split model; `file` is its ONNX file in the package ("" when not exported)."""

    name: str  # "embed", "layers_{first}_{end}", "head"
    kind: str  # one of GRAPH_KINDS
    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    tensors: tuple[TensorRef, ...]
    ops: tuple[OpRecord, ...]
    first_layer: int = 0  # layer ranges are half-open [first_layer, end_layer); 0, 0 for embed and head
    end_layer: int = 0
    file: str = ""

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def tensor(self, name: str) -> TensorRef:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(f"graph {self.name} has no tensor {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "first_layer": self.first_layer, "end_layer": self.end_layer,
            "file": self.file,
            "inputs": [v.to_dict() for v in self.inputs], "outputs": [v.to_dict() for v in self.outputs],
            "tensors": [t.to_dict() for t in self.tensors], "ops": [o.to_dict() for o in self.ops],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GraphSpec":
        """Read a manifest entry; raises PackageError when it is not a graph record."""
        try:
            spec = cls(
                name=_text(d, "name"), kind=_text(d, "kind"), first_layer=int(d.get("first_layer", 0)),
                end_layer=int(d.get("end_layer", 0)), file=_text(d, "file", ""),
                inputs=tuple(ValueInfo.from_dict(v) for v in d["inputs"]),
                outputs=tuple(ValueInfo.from_dict(v) for v in d["outputs"]),
                tensors=tuple(TensorRef.from_dict(t) for t in d["tensors"]),
                ops=tuple(OpRecord.from_dict(o) for o in d["ops"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:  # OverflowError: int(Infinity)
            name = d.get("name", "?") if isinstance(d, dict) else "?"
            raise PackageError(f"graph record {name!r} is incomplete ({type(e).__name__}: {e}); convert the model again") from e
        if spec.kind not in GRAPH_KINDS:
            raise PackageError(f"graph {spec.name!r} has unknown kind {spec.kind!r}; expected one of {', '.join(GRAPH_KINDS)}")
        unknown = sorted({o.kind for o in spec.ops} - set(OP_KINDS))
        if unknown:
            raise PackageError(f"graph {spec.name!r} uses ops this edge_sdk does not know: {', '.join(unknown)}")
        return spec


def specs_from_manifest(graphs: list[dict[str, Any]]) -> list[GraphSpec]:
    """The GraphSpecs of a package manifest's `graphs` list, in run order."""
    return [GraphSpec.from_dict(g) for g in graphs]
