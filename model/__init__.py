"""Turn torchvision checkpoints into ONNX embedding models plus a manifest, without PyTorch.

Nothing at runtime imports this package: it runs at build time (``python -m model.build``) and writes
``model.onnx`` + ``manifest.json``, which is all the Lambdas and local mode read.
"""

from __future__ import annotations

# Part of every model id: bump it whenever the emitted graph can change for the same weights, so that
# indexes built with an older conversion are never mixed with new embeddings.
CONVERTER_VERSION = "1"

__all__ = ["CONVERTER_VERSION"]
