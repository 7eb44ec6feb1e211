"""The split model: graph records (`spec`), where weights sit (`layout`), how graphs are cut (`split`), built (`build`)."""

from .build import build_graphs
from .spec import GraphSpec, OpRecord, TensorRef, ValueInfo, specs_from_manifest
from .split import SplitPolicy, split_layers

__all__ = ["GraphSpec", "OpRecord", "SplitPolicy", "TensorRef", "ValueInfo", "build_graphs", "specs_from_manifest",
           "split_layers"]
