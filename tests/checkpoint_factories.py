"""Checkpoints written in torch's own formats, without torch: for the reader's tests and for a synthetic
release that tests serve, cache and convert like the real file.

The standard pickle module writes them: stand-ins for ``torch.FloatStorage`` and
``torch._utils._rebuild_tensor_v2`` are registered under torch's module names only while pickling, so the
files carry exactly the globals real checkpoints carry.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt

from model.checkpoint import StateDict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_TYPES = {np.dtype("<f4"): "FloatStorage", np.dtype("<i8"): "LongStorage"}


class Storage:
    """A flat storage to pickle by persistent id, as torch does."""

    def __init__(self, key: str, values: npt.NDArray[Any]) -> None:
        self.key, self.values = key, values


class Tensor:
    """A strided view of a ``Storage``; pickles as torch's ``_rebuild_tensor_v2`` call."""

    def __init__(
        self, storage: Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, OrderedDict())


@contextmanager
def torch_names() -> Iterator[types.ModuleType]:
    """Stand-ins registered as ``torch`` and ``torch._utils`` so pickle writes torch's global names."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*_args: Any) -> None:
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    for name in STORAGE_TYPES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    with mock.patch.dict(sys.modules, {"torch": torch, "torch._utils": utils}):
        yield torch


def _pickle(state: object, *, legacy: bool) -> bytes:
    buffer = io.BytesIO()
    with torch_names() as torch:

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj: object) -> tuple[Any, ...] | None:
                if not isinstance(obj, Storage):
                    return None
                kind = getattr(torch, STORAGE_TYPES[obj.values.dtype])
                record = ("storage", kind, obj.key, "cpu", obj.values.size)
                return (*record, None) if legacy else record

        Pickler(buffer, protocol=2).dump(state)
    return buffer.getvalue()


def _storages(state: dict[str, Tensor]) -> dict[str, Storage]:
    return {tensor.storage.key: tensor.storage for tensor in state.values()}


def write_zip(state: dict[str, Tensor]) -> bytes:
    """torch >= 1.6: ``<prefix>/data.pkl`` plus one raw member per storage."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("resnet_tiny/data.pkl", _pickle(OrderedDict(state), legacy=False))
        archive.writestr("resnet_tiny/byteorder", "little")
        for key, storage in _storages(state).items():
            archive.writestr(f"resnet_tiny/data/{key}", storage.values.tobytes())
        archive.writestr("resnet_tiny/version", "3\n")
    return buffer.getvalue()


def write_legacy(state: dict[str, Tensor], *, main_pickle: bytes | None = None) -> bytes:
    """torch < 1.6: magic, protocol and sys-info pickles, the state dict, the storage keys, raw storages."""
    buffer = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
        pickle.dump(header, buffer, protocol=2)
    buffer.write(main_pickle or _pickle(OrderedDict(state), legacy=True))
    storages = _storages(state)
    pickle.dump(list(storages), buffer, protocol=2)
    for storage in storages.values():
        buffer.write(struct.pack("<q", storage.values.size))
        buffer.write(storage.values.tobytes())
    return buffer.getvalue()


def checkpoint_bytes(weights: StateDict) -> bytes:
    """``torch.save(state_dict)`` of ``weights`` (zip format, one storage per tensor)."""
    return write_zip({name: _tensor(str(key), value) for key, (name, value) in enumerate(weights.items())})


def _tensor(key: str, value: npt.NDArray[Any]) -> Tensor:
    contiguous = np.array(value, order="C")  # keeps 0-d tensors 0-d, unlike ascontiguousarray
    stride = tuple(step // contiguous.itemsize for step in contiguous.strides)
    return Tensor(Storage(key, contiguous.reshape(-1)), 0, contiguous.shape, stride)
