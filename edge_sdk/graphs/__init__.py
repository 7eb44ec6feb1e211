"""The split model: the int8 model cut into graphs (embedding, ranges of decoder layers, head).

Takes a `ModelConfig` and a `QuantConfig` (no weights) and gives plain graph records (`spec`: ops, inputs,
outputs and the byte ranges of their tensors in `weights.bin`, whose layout `layout` fixes), cut by a
`split` policy (K layers per graph, or as many as fit a byte budget) and built by `build`. The exporters write
them as ONNX and TFLite files, the planner sizes and places them, and the package records them.
"""

from .build import build_graphs
from .spec import GraphSpec, OpRecord, TensorRef, ValueInfo, specs_from_manifest
from .split import SplitPolicy, split_layers

__all__ = ["GraphSpec", "OpRecord", "SplitPolicy", "TensorRef", "ValueInfo", "build_graphs", "specs_from_manifest",
           "split_layers"]
