"""The architectures the converter knows, by the name used on the command line and in model ids.

Adding one (e.g. EfficientNet-Lite0) is a module that lays out its blocks and releases, plus a line here.
"""

from __future__ import annotations

from model.architectures.efficientnet_lite0 import EFFICIENTNET_LITE0
from model.architectures.mobilenet_v2 import MOBILENET_V2
from model.architectures.resnet50 import RESNET50
from model.network import Architecture

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch for arch in (RESNET50, MOBILENET_V2, EFFICIENTNET_LITE0)
}

__all__ = ["ARCHITECTURES", "EFFICIENTNET_LITE0", "MOBILENET_V2", "RESNET50", "Architecture"]
