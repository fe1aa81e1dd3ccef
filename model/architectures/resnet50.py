"""torchvision's ``resnet50()``: a 7x7 stem, max pooling, then 3-4-6-3 bottlenecks; 2048-d embedding.

The stride sits on each bottleneck's 3x3 convolution (torchvision's "ResNet v1.5"), and the first block of
every stage has a ``downsample`` projection on its shortcut.
"""

from __future__ import annotations

from model.layers import Block, Classifier, ConvBN, MaxPool, Residual
from model.network import Architecture
from model.releases import OfficialDownload, Release

_EXPANSION = 4
_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride of the first block)


def _bottleneck(prefix: str, *, cin: int, width: int, stride: int) -> Residual:
    cout = width * _EXPANSION
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = ConvBN(
            conv=f"{prefix}.downsample.0",
            bn=f"{prefix}.downsample.1",
            cin=cin,
            cout=cout,
            kernel=1,
            stride=stride,
            activation=None,
        )
    body = (
        ConvBN(conv=f"{prefix}.conv1", bn=f"{prefix}.bn1", cin=cin, cout=width, kernel=1, activation="relu"),
        ConvBN(
            conv=f"{prefix}.conv2",
            bn=f"{prefix}.bn2",
            cin=width,
            cout=width,
            kernel=3,
            stride=stride,
            activation="relu",
        ),
        ConvBN(conv=f"{prefix}.conv3", bn=f"{prefix}.bn3", cin=width, cout=cout, kernel=1, activation=None),
    )
    return Residual(name=prefix, body=body, shortcut=shortcut, activation="relu")


def _blocks() -> tuple[Block, ...]:
    blocks: list[Block] = [
        ConvBN(conv="conv1", bn="bn1", cin=3, cout=64, kernel=7, stride=2, activation="relu"),
        MaxPool(name="maxpool", kernel=3, stride=2),
    ]
    cin = 64
    for stage, (width, count, stride) in enumerate(_STAGES, start=1):
        for index in range(count):
            blocks.append(
                _bottleneck(f"layer{stage}.{index}", cin=cin, width=width, stride=stride if index == 0 else 1)
            )
            cin = width * _EXPANSION
    blocks.append(Classifier(name="fc", features=cin))
    return tuple(blocks)


def _official(tag: str, file_name: str, *, sha256: str, size: int) -> Release:
    url = f"https://download.pytorch.org/models/{file_name}"
    return Release(tag, file_name, OfficialDownload(url), sha256=sha256, size=size)


RESNET50 = Architecture(
    name="resnet50",
    blocks=_blocks(),
    embedding_dim=2048,
    releases=(
        # torchvision's published files; size and sha256 agreed by several public records (for V2, e.g.
        # Dramwig/CoFiTok-internal src/cofitok/generation_class_fidelity.py, which verifies downloads of it).
        _official(
            "IMAGENET1K_V1",
            "resnet50-0676ba61.pth",
            sha256="0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
            size=102_530_333,
        ),
        _official(
            "IMAGENET1K_V2",
            "resnet50-11ad3fa6.pth",
            sha256="11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca",
            size=102_540_417,
        ),
    ),
)
