"""Split policy: which ranges of decoder layers form one graph.

A model is cut into an `embed` graph, one or more layer-range graphs and a
`head` graph. The policy picks the ranges: everything in one graph, a fixed
number of layers per graph, or as many consecutive layers as fit in a byte
budget (so a board with little RAM can hold one range at a time).

Example::

    split_layers(cfg, QuantConfig(), SplitPolicy(layers_per_graph=8))
    # [(0, 8), (8, 16), (16, 24), (24, 30)]
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.config import ModelConfig, QuantConfig
from ..errors import InvalidArgumentError, PlanError
from ..model.sizes import layer_weight_bytes


@dataclass(frozen=True)
class SplitPolicy:
    """At most one of the two limits may be set; neither means one graph for all layers."""

    layers_per_graph: int = 0
    max_graph_bytes: int = 0

    def __post_init__(self) -> None:
        if self.layers_per_graph < 0 or self.max_graph_bytes < 0:
            raise InvalidArgumentError("layers_per_graph and max_graph_bytes must be >= 0")
        if self.layers_per_graph and self.max_graph_bytes:
            raise InvalidArgumentError("give layers_per_graph or max_graph_bytes, not both")

    def describe(self) -> str:
        if self.layers_per_graph:
            return f"{self.layers_per_graph} layer{'s' if self.layers_per_graph > 1 else ''} per graph"
        if self.max_graph_bytes:
            return f"at most {self.max_graph_bytes} weight bytes per graph"
        return "all layers in one graph"


def split_layers(cfg: ModelConfig, q: QuantConfig, policy: SplitPolicy) -> list[tuple[int, int]]:
    """Half-open layer ranges `[start, end)` covering `range(cfg.n_layers)` in order."""
    n = cfg.n_layers
    if policy.layers_per_graph:
        k = policy.layers_per_graph
        return [(s, min(s + k, n)) for s in range(0, n, k)]
    if policy.max_graph_bytes:
        per_layer = layer_weight_bytes(cfg, q)
        if per_layer > policy.max_graph_bytes:
            raise PlanError(
                f"one decoder layer needs {per_layer} weight bytes, more than the "
                f"max_graph_bytes={policy.max_graph_bytes} allowed per graph"
            )
        k = policy.max_graph_bytes // per_layer
        return [(s, min(s + k, n)) for s in range(0, n, k)]
    return [(0, n)]
