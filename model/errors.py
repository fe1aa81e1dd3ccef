"""Errors raised on purpose while turning a checkpoint into an ONNX model.

They extend the core hierarchy so a build failure reads like any other ``SimsearchError``; they live here
because nothing at runtime can raise them (the Lambda bundle never imports ``model/``).
"""

from __future__ import annotations

from simsearch.errors import SimsearchError


class ModelBuildError(SimsearchError):
    """Base of every error the converter raises on purpose."""

    code = "model_build_error"


class UnsafeCheckpointError(ModelBuildError):
    """The checkpoint's pickle names a global outside the tensor-rebuild allow-list: it could run code."""

    code = "unsafe_checkpoint"


class CheckpointFormatError(ModelBuildError):
    """The file is not a readable torch state dict, or it does not match the architecture's layout."""

    code = "checkpoint_format"


class WeightsIntegrityError(ModelBuildError):
    """The weights' sha256 does not start with the 8 hex characters their release file name promises."""

    code = "weights_integrity"


class WeightsUnavailableError(ModelBuildError):
    """The weights could not be obtained (no network, pip failed); the message says how to supply them."""

    code = "weights_unavailable"


class ProjectionFitError(ModelBuildError):
    """A whitening cannot be fitted on this corpus (too few images or labels for the dimensions asked)."""

    code = "projection_fit"
