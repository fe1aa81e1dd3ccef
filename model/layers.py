"""The building blocks torchvision's CNNs are made of, each knowing its state-dict entries and its ONNX nodes.

An architecture is a tuple of blocks. Walking it yields the state-dict layout (names and shapes, in
torchvision's order: what synthetic weights are generated from and a checkpoint is checked against) and
emits the graph, so the two can never disagree. Batch norms are folded into the convolution before them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from model.checkpoint import StateDict
from model.graph import Activation, GraphBuilder

BATCH_NORM_EPSILON = 1e-5


@dataclass(frozen=True)
class ParamSpec:
    """One state-dict entry as ``torch.nn.Module.state_dict()`` lists it."""

    name: str
    shape: tuple[int, ...]
    dtype: Literal["float32", "int64"] = "float32"


class Block(Protocol):
    def parameters(self) -> Iterator[ParamSpec]:
        """The block's state-dict entries, in registration order."""
        ...

    def emit(self, graph: GraphBuilder, x: str, weights: StateDict) -> str:
        """Add the block's nodes after tensor ``x`` and return its output tensor's name."""
        ...


def fold_batch_norm(
    weight: npt.NDArray[np.float32], weights: StateDict, bn: str, *, eps: float = BATCH_NORM_EPSILON
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Fold an eval-mode batch norm into the preceding bias-free convolution (computed in float64)."""
    scale = weights[f"{bn}.weight"].astype(np.float64) / np.sqrt(
        weights[f"{bn}.running_var"].astype(np.float64) + eps
    )
    folded = weight.astype(np.float64) * scale[:, None, None, None]
    bias = weights[f"{bn}.bias"].astype(np.float64) - weights[f"{bn}.running_mean"].astype(np.float64) * scale
    return folded.astype(np.float32), bias.astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class ConvBN:
    """``Conv2d(bias=False)`` → ``BatchNorm2d`` → optional activation; ``conv``/``bn`` are module paths.

    ``bn_eps`` and ``same_upper`` (TensorFlow ``SAME`` padding) describe networks ported from TensorFlow.
    """

    conv: str
    bn: str
    cin: int
    cout: int
    kernel: int
    stride: int = 1
    groups: int = 1
    activation: Activation | None
    bn_eps: float = BATCH_NORM_EPSILON
    same_upper: bool = False

    def parameters(self) -> Iterator[ParamSpec]:
        yield ParamSpec(f"{self.conv}.weight", (self.cout, self.cin // self.groups, self.kernel, self.kernel))
        for field in ("weight", "bias", "running_mean", "running_var"):
            yield ParamSpec(f"{self.bn}.{field}", (self.cout,))
        yield ParamSpec(f"{self.bn}.num_batches_tracked", (), "int64")

    def emit(self, graph: GraphBuilder, x: str, weights: StateDict) -> str:
        weight, bias = fold_batch_norm(weights[f"{self.conv}.weight"], weights, self.bn, eps=self.bn_eps)
        y = graph.conv(
            x,
            name=self.conv,
            weight=weight,
            bias=bias,
            stride=self.stride,
            groups=self.groups,
            same_upper=self.same_upper,
        )
        if self.activation is None:
            return y
        return graph.activation(y, self.activation, name=f"{self.conv}.{self.activation}")


def conv_norm_activation(
    prefix: str, *, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, activation: Activation
) -> ConvBN:
    """torchvision's ``Conv2dNormActivation``: a ``Sequential``, convolution at ``.0`` and norm at ``.1``."""
    return ConvBN(
        conv=f"{prefix}.0",
        bn=f"{prefix}.1",
        cin=cin,
        cout=cout,
        kernel=kernel,
        stride=stride,
        groups=groups,
        activation=activation,
    )


@dataclass(frozen=True, kw_only=True)
class MaxPool:
    """A parameter-free max pooling padded by ``(k - 1) // 2``."""

    name: str
    kernel: int
    stride: int

    def parameters(self) -> Iterator[ParamSpec]:
        yield from ()

    def emit(self, graph: GraphBuilder, x: str, weights: StateDict) -> str:  # noqa: ARG002 (Block protocol)
        return graph.max_pool(x, name=self.name, kernel=self.kernel, stride=self.stride)


@dataclass(frozen=True, kw_only=True)
class Residual:
    """``activation(body(x) + shortcut(x))``; no shortcut block means the identity."""

    name: str
    body: tuple[Block, ...]
    shortcut: Block | None = None
    activation: Activation | None = None

    def parameters(self) -> Iterator[ParamSpec]:
        for block in self.body:
            yield from block.parameters()
        if self.shortcut is not None:
            yield from self.shortcut.parameters()

    def emit(self, graph: GraphBuilder, x: str, weights: StateDict) -> str:
        y = emit_chain(self.body, graph, x, weights)
        identity = x if self.shortcut is None else self.shortcut.emit(graph, x, weights)
        total = graph.node("Add", [y, identity], name=f"{self.name}.add")
        if self.activation is None:
            return total
        return graph.activation(total, self.activation, name=f"{self.name}.{self.activation}")


@dataclass(frozen=True, kw_only=True)
class Chain:
    """Blocks applied one after another (a ``Sequential`` without a shortcut)."""

    blocks: tuple[Block, ...]

    def parameters(self) -> Iterator[ParamSpec]:
        for block in self.blocks:
            yield from block.parameters()

    def emit(self, graph: GraphBuilder, x: str, weights: StateDict) -> str:
        return emit_chain(self.blocks, graph, x, weights)


@dataclass(frozen=True, kw_only=True)
class Classifier:
    """The ImageNet ``Linear`` layer: in the checkpoint (so in the layout); the embedding stops before it."""

    name: str
    features: int
    classes: int = 1000

    def parameters(self) -> Iterator[ParamSpec]:
        yield ParamSpec(f"{self.name}.weight", (self.classes, self.features))
        yield ParamSpec(f"{self.name}.bias", (self.classes,))

    def emit(self, graph: GraphBuilder, x: str, weights: StateDict) -> str:  # noqa: ARG002 (Block protocol)
        return x


def emit_chain(blocks: tuple[Block, ...], graph: GraphBuilder, x: str, weights: StateDict) -> str:
    for block in blocks:
        x = block.emit(graph, x, weights)
    return x
