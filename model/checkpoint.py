"""Read a torch state-dict checkpoint into numpy arrays, without torch and without running its code.

A checkpoint is a pickle, and unpickling an untrusted pickle can call any importable function. The
unpickler here resolves only the few globals a state dict needs, each to a local stand-in, so a checkpoint
can describe tensors but never execute anything. Both serialisations torch has used are read:

- zip (torch >= 1.6): ``<prefix>/data.pkl`` plus one raw file per storage, ``<prefix>/data/<key>``;
- legacy sequential (the MobileNetV2 release): magic-number, protocol and sys-info pickles, the main pickle,
  a pickle listing the storage keys, then each storage as an int64 element count and its raw bytes.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from model.errors import CheckpointFormatError, UnsafeCheckpointError

StateDict = dict[str, npt.NDArray[Any]]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"

# torch's storage classes and the little-endian numpy dtype of their elements (bfloat16 has none).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}

# Anything the unpickler can be made to raise while reading malformed bytes.
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError)


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: all a checkpoint may learn from one is its dtype."""

    name: str
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by the pickle; its bytes come later (legacy) or from another zip member."""

    key: str
    dtype: np.dtype[Any]
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A strided view of a storage, as ``torch._utils._rebuild_tensor_v2`` describes it."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_int_tuple(value: object) -> bool:
    return isinstance(value, tuple) and all(_is_int(item) for item in value)


def _rebuild_tensor(
    storage: object, offset: object, shape: object, stride: object, *_flags: object
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``; requires_grad, hooks and metadata do not matter."""
    if not (
        isinstance(storage, _StorageRef)
        and _is_int(offset)
        and _is_int_tuple(shape)
        and _is_int_tuple(stride)
        and len(shape) == len(stride)  # type: ignore[arg-type]
    ):
        raise CheckpointFormatError(f"malformed tensor record: storage {storage!r:.60}, shape {shape!r:.60}")
    return _TensorRef(storage, offset, shape, stride)  # type: ignore[arg-type]


def _rebuild_parameter(data: object, *_flags: object) -> object:
    """Stand-in for ``torch._utils._rebuild_parameter``: a parameter is its tensor."""
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``_ALLOWED_GLOBALS`` and records every storage the pickle refers to."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint pickle references {module}.{name}; only collections.OrderedDict, "
                "torch._utils._rebuild_tensor_v2/_rebuild_parameter and torch.*Storage types are allowed, "
                "so that loading a checkpoint cannot run code"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        # zip: ("storage", type, key, location, numel); legacy adds view metadata, always None for state dicts
        match pid:
            case ("storage", _StorageType(dtype=dtype), str(key), str(), int(numel)) | (
                "storage",
                _StorageType(dtype=dtype),
                str(key),
                str(),
                int(numel),
                None,
            ):
                ref = _StorageRef(key, dtype, numel)
            case _:
                raise CheckpointFormatError(f"unsupported persistent id in checkpoint: {pid!r:.100}")
        if self.storages.setdefault(key, ref) != ref:
            raise CheckpointFormatError(f"storage {key} is declared twice with different types or sizes")
        return ref


def _unpickle(unpickler: pickle.Unpickler) -> Any:
    try:
        return unpickler.load()
    except _MALFORMED as error:
        raise CheckpointFormatError(f"checkpoint pickle is malformed or truncated: {error!r:.200}") from error


def read_state_dict(data: bytes) -> StateDict:
    """Parse checkpoint bytes of either serialisation into name → array, in the checkpoint's order.

    Raises:
        UnsafeCheckpointError: the pickle names a global outside the allow-list.
        CheckpointFormatError: anything else that is not a well-formed state dict of tensors.
    """
    if data.startswith(_ZIP_MAGIC):
        return _read_zip(data)
    return _read_legacy(data)


def _read_zip(data: bytes) -> StateDict:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise CheckpointFormatError(
                    f"zip checkpoint must hold one <prefix>/data.pkl, found {pickles}"
                )
            prefix = pickles[0].removesuffix("data.pkl")
            if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder") != b"little":
                raise CheckpointFormatError(
                    "checkpoint was saved big-endian; only little-endian is supported"
                )
            unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])))
            root = _unpickle(unpickler)
            buffers = {key: archive.read(f"{prefix}data/{key}") for key in unpickler.storages}
    except (zipfile.BadZipFile, KeyError, EOFError) as error:
        raise CheckpointFormatError(f"zip checkpoint is damaged or incomplete: {error}") from error
    return _state_dict(root, buffers)


def _read_legacy(data: bytes) -> StateDict:
    stream = io.BytesIO(data)
    if _unpickle(_RestrictedUnpickler(stream)) != _LEGACY_MAGIC:
        raise CheckpointFormatError(
            "not a torch checkpoint: neither a zip archive nor the legacy magic number"
        )
    protocol = _unpickle(_RestrictedUnpickler(stream))
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(
            f"legacy checkpoint protocol {protocol!r}; only {_LEGACY_PROTOCOL} is known"
        )
    sys_info = _unpickle(_RestrictedUnpickler(stream))
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise CheckpointFormatError("checkpoint was not saved little-endian; only little-endian is supported")
    unpickler = _RestrictedUnpickler(stream)
    root = _unpickle(unpickler)
    keys = _unpickle(_RestrictedUnpickler(stream))
    if not (isinstance(keys, list) and set(keys) == set(unpickler.storages)):
        raise CheckpointFormatError(
            "legacy checkpoint's storage key list does not match the storages it uses"
        )
    return _state_dict(root, {key: _read_legacy_storage(stream, unpickler.storages[key]) for key in keys})


def _read_legacy_storage(stream: IO[bytes], storage: _StorageRef) -> bytes:
    header = stream.read(8)
    if len(header) != 8:
        raise CheckpointFormatError(f"checkpoint is truncated before storage {storage.key}")
    (numel,) = struct.unpack("<q", header)
    if numel != storage.numel:
        raise CheckpointFormatError(
            f"storage {storage.key} holds {numel} elements, its record says {storage.numel}"
        )
    nbytes = numel * storage.dtype.itemsize
    payload = stream.read(nbytes)
    if len(payload) != nbytes:
        raise CheckpointFormatError(f"checkpoint is truncated inside storage {storage.key}")
    return payload


def _state_dict(root: object, buffers: Mapping[str, bytes]) -> StateDict:
    if not isinstance(root, dict):
        raise CheckpointFormatError(f"checkpoint holds a {type(root).__name__}, not a state dict")
    state: StateDict = {}
    for name, value in root.items():
        if not (isinstance(name, str) and isinstance(value, _TensorRef)):
            raise CheckpointFormatError(
                f"checkpoint entry {name!r:.60} holds {type(value).__name__}, not a tensor; pass a plain "
                "state dict (e.g. torch.save(model.state_dict(), path))"
            )
        state[name] = _materialise(value, buffers[value.storage.key])
    return state


def _materialise(tensor: _TensorRef, buffer: bytes) -> npt.NDArray[Any]:
    """Copy the strided view out of its storage, after proving every element lies inside it."""
    storage = tensor.storage
    if len(buffer) < storage.numel * storage.dtype.itemsize:
        raise CheckpointFormatError(f"storage {storage.key} is shorter than its {storage.numel} elements")
    if tensor.offset < 0 or min(tensor.shape + tensor.stride, default=0) < 0:
        raise CheckpointFormatError(f"tensor on storage {storage.key} has a negative offset, size or stride")
    if 0 in tensor.shape:
        return np.zeros(tensor.shape, dtype=storage.dtype)
    if math.prod(tensor.shape) > storage.numel:  # only zero strides could do that: a memory bomb, not weights
        raise CheckpointFormatError(
            f"tensor of shape {tensor.shape} has more elements than storage {storage.key} ({storage.numel})"
        )
    last = tensor.offset + sum(
        (size - 1) * step for size, step in zip(tensor.shape, tensor.stride, strict=True)
    )
    if last >= storage.numel:
        raise CheckpointFormatError(
            f"tensor reaches element {last} of storage {storage.key}, which holds {storage.numel}"
        )
    elements = np.frombuffer(buffer, dtype=storage.dtype, count=storage.numel)
    view = np.lib.stride_tricks.as_strided(
        elements[tensor.offset :],
        shape=tensor.shape,
        strides=tuple(step * storage.dtype.itemsize for step in tensor.stride),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="))
