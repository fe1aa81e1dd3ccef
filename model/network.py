"""What an architecture is: blocks, the input it expects, and the weight releases published for it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from model.checkpoint import StateDict
from model.errors import CheckpointFormatError, WeightsUnavailableError
from model.graph import GraphBuilder, Pooling, TestTimeAugmentation
from model.layers import Block, ParamSpec, emit_chain
from model.releases import Release

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """A torchvision CNN trunk whose globally pooled features are the embedding.

    ``releases[0]`` is the default weights; ``resize``/``input_size``/``mean``/``std`` are the
    preprocessing its releases were trained with, copied into the manifest.
    """

    name: str
    blocks: tuple[Block, ...]
    embedding_dim: int
    releases: tuple[Release, ...]
    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def layout(self) -> tuple[ParamSpec, ...]:
        """The state dict torchvision's model has, in its order."""
        return tuple(spec for block in self.blocks for spec in block.parameters())

    def release(self, tag: str) -> Release:
        for release in self.releases:
            if release.tag == tag:
                return release
        known = [release.tag for release in self.releases]
        raise WeightsUnavailableError(f"{self.name} has no weights release {tag!r}; known: {known}")

    def check(self, weights: StateDict) -> None:
        """Refuse a state dict that ``load_state_dict(strict=True)`` would refuse (names and shapes)."""
        expected = {spec.name: spec.shape for spec in self.layout()}
        missing = sorted(expected.keys() - weights.keys())
        unexpected = sorted(weights.keys() - expected.keys())
        misshapen = sorted(
            f"{name} {weights[name].shape}≠{shape}"
            for name, shape in expected.items()
            if name in weights and weights[name].shape != shape
        )
        not_float = sorted(
            spec.name
            for spec in self.layout()
            if spec.dtype == "float32" and spec.name in weights and weights[spec.name].dtype.kind != "f"
        )
        if missing or unexpected or misshapen or not_float:
            raise CheckpointFormatError(
                f"checkpoint is not a {self.name} state dict: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}, wrong shapes {misshapen[:5]}, not floating point {not_float[:5]}"
            )

    def to_onnx(
        self,
        weights: StateDict,
        *,
        input_name: str,
        output_name: str,
        producer_version: str,
        pooling: Pooling = "avg",
        tta: TestTimeAugmentation = "none",
    ) -> onnx.ModelProto:
        """The embedding model: (N, 3, S, S) float32 → (N, ``embedding_dim``) unit-length embeddings."""
        self.check(weights)
        graph = GraphBuilder(input_name=input_name, channels=len(self.mean), size=self.input_size)
        trunk_input = graph.with_mirror_images(input_name) if tta == "hflip" else input_name
        trunk = emit_chain(self.blocks, graph, trunk_input, _as_float32(weights))
        output = graph.embedding_head(
            trunk, output_name=output_name, pooling=pooling, tta=tta, channels=self.embedding_dim
        )
        return graph.model(
            output, output_dim=self.embedding_dim, graph_name=self.name, producer_version=producer_version
        )


def _as_float32(weights: StateDict) -> StateDict:
    return {
        name: value.astype(np.float32) if value.dtype.kind == "f" else value
        for name, value in weights.items()
    }
