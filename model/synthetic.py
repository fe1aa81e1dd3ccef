"""Synthetic weights: a published, seeded recipe that needs no download.

They make the converter testable bit for bit against torchvision for architectures whose real checkpoint
cannot be fetched offline (ResNet50): the golden reference ran torchvision with exactly these weights.
The recipe is quoted from the golden file's ``metadata.synthetic_weights_recipe``; ``state_dict_sha256``
proves a reimplementation matches it.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from model.checkpoint import StateDict
from model.layers import ParamSpec


def synthetic_state_dict(layout: Iterable[ParamSpec]) -> StateDict:
    """One tensor per layout entry, seeded by ``zlib.crc32(name)``, computed in float64, stored as float32."""
    return {spec.name: _synthetic_tensor(spec) for spec in layout}


def _synthetic_tensor(spec: ParamSpec) -> npt.NDArray[Any]:
    name, shape = spec.name, spec.shape
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    if name.endswith("running_var"):
        values = 1.0 + 0.1 * np.abs(rng.standard_normal(shape))
    elif name.endswith("running_mean"):
        values = 0.1 * rng.standard_normal(shape)
    elif name.endswith(".weight") and len(shape) == 1:  # batch-norm scale
        values = 1.0 + 0.1 * rng.standard_normal(shape)
    elif name.endswith(".bias"):
        values = 0.1 * rng.standard_normal(shape)
    else:  # convolution or linear weight: He initialisation
        values = rng.standard_normal(shape) * math.sqrt(2.0 / math.prod(shape[1:]))
    return values.astype(np.float32)


def state_dict_sha256(weights: StateDict) -> str:
    """sha256 over every tensor's little-endian bytes in state-dict order (the golden file's digest)."""
    digest = hashlib.sha256()
    for value in weights.values():
        digest.update(np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()
