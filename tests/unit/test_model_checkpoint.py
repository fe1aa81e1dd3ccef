"""The restricted checkpoint reader: both torch serialisations, strided views, and refusal of anything else.

Checkpoints are written in torch's own formats by ``tests.checkpoint_factories``.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from model.checkpoint import read_state_dict
from model.errors import CheckpointFormatError, UnsafeCheckpointError
from tests.checkpoint_factories import Storage, Tensor, write_legacy, write_zip


def sample_state() -> dict[str, Tensor]:
    """Shapes and views real state dicts use: contiguous, transposed, offset, scalar int64, shared storage."""
    floats = Storage("0", np.arange(12, dtype="<f4") / 4)
    longs = Storage("7", np.array([5, 6, 7, 8, 9, 10], dtype="<i8"))
    return {
        "conv.weight": Tensor(floats, 0, (2, 3, 1, 2), (6, 2, 2, 1)),
        "conv.transposed": Tensor(floats, 0, (3, 4), (1, 3)),
        "bn.running_mean": Tensor(floats, 5, (3,), (2,)),
        "bn.num_batches_tracked": Tensor(longs, 3, (), ()),
        "counts": Tensor(longs, 1, (4,), (1,)),
    }


EXPECTED: dict[str, npt.NDArray[Any]] = {
    "conv.weight": (np.arange(12, dtype=np.float32) / 4).reshape(2, 3, 1, 2),
    "conv.transposed": (np.arange(12, dtype=np.float32) / 4).reshape(4, 3).T,
    "bn.running_mean": np.array([1.25, 1.75, 2.25], dtype=np.float32),
    "bn.num_batches_tracked": np.array(8, dtype=np.int64),
    "counts": np.array([6, 7, 8, 9], dtype=np.int64),
}


@pytest.mark.parametrize("write", [write_zip, write_legacy], ids=["zip", "legacy"])
def test_reads_every_tensor_with_its_offset_stride_and_dtype(write: Any) -> None:
    state = read_state_dict(write(sample_state()))

    assert list(state) == list(EXPECTED)
    for name, expected in EXPECTED.items():
        assert state[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(state[name], expected, err_msg=name)


def test_arrays_are_independent_copies() -> None:
    state = read_state_dict(write_zip(sample_state()))

    state["conv.weight"][0, 0, 0, 0] = 99.0

    assert state["conv.transposed"][0, 0] == 0.0
    assert state["conv.weight"].flags.c_contiguous


class RunsCommand:
    """What a malicious checkpoint does: pickle a call to ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.marker}",)


class CallsEval:
    def __reduce__(self) -> tuple[Any, ...]:
        return eval, ("1 + 1",)


def _zip_with_pickle(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    return buffer.getvalue()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize(
    "wrap",
    [_zip_with_pickle, lambda p: p, lambda p: write_legacy({}, main_pickle=p)],
    ids=["zip", "legacy-magic", "legacy-main"],
)
def test_a_pickled_os_system_call_is_refused_and_never_runs(tmp_path: Path, protocol: int, wrap: Any) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": RunsCommand(marker)}, protocol=protocol)

    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system|os\.system"):
        read_state_dict(wrap(payload))

    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(CallsEval(), protocol=2),
        b"\x80\x02ctorch\nload\n.",  # a torch global that is not on the list
        b"\x80\x02ccollections\nnamedtuple\n.",  # an allowed module, another name
        b"\x80\x02ctorch._utils\n_rebuild_device_tensor_from_numpy\n.",
    ],
    ids=["eval", "torch.load", "collections.namedtuple", "other-torch-rebuild"],
)
def test_globals_off_the_allow_list_are_refused(payload: bytes) -> None:
    with pytest.raises(UnsafeCheckpointError):
        read_state_dict(_zip_with_pickle(payload))


def test_a_view_reaching_past_its_storage_is_refused() -> None:
    state = sample_state()
    state["counts"] = Tensor(state["counts"].storage, 3, (4,), (1,))  # elements 3..6 of 6

    with pytest.raises(CheckpointFormatError, match="reaches element 6"):
        read_state_dict(write_zip(state))


def test_a_zero_stride_view_larger_than_its_storage_is_refused() -> None:
    state = {"w": Tensor(Storage("0", np.zeros(4, dtype="<f4")), 0, (10**6, 10**6), (0, 0))}

    with pytest.raises(CheckpointFormatError, match="more elements than storage 0"):
        read_state_dict(write_zip(state))


def test_a_negative_stride_is_refused() -> None:
    state = {"w": Tensor(Storage("0", np.zeros(4, dtype="<f4")), 3, (4,), (-1,))}

    with pytest.raises(CheckpointFormatError, match="negative"):
        read_state_dict(write_legacy(state))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "malformed or truncated"),
        (b"hello, not a checkpoint", "malformed or truncated"),
        (pickle.dumps(12345, protocol=2), "neither a zip archive nor the legacy magic"),
        (b"PK\x03\x04 broken zip", "damaged"),
    ],
    ids=["empty", "text", "other-pickle", "broken-zip"],
)
def test_non_checkpoints_are_format_errors(data: bytes, message: str) -> None:
    with pytest.raises(CheckpointFormatError, match=message):
        read_state_dict(data)


def test_a_truncated_legacy_checkpoint_is_a_format_error() -> None:
    data = write_legacy(sample_state())

    with pytest.raises(CheckpointFormatError, match="truncated inside storage 7"):
        read_state_dict(data[:-1])


def test_a_zip_checkpoint_missing_a_storage_is_a_format_error() -> None:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(write_zip(sample_state()))) as source,
        zipfile.ZipFile(buffer, "w") as copy,
    ):
        for name in source.namelist():
            if name != "resnet_tiny/data/7":
                copy.writestr(name, source.read(name))

    with pytest.raises(CheckpointFormatError, match="damaged or incomplete"):
        read_state_dict(buffer.getvalue())


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pickle.dumps([1, 2], protocol=2), "holds a list, not a state dict"),
        (pickle.dumps({"epoch": 3}, protocol=2), "'epoch' holds int, not a tensor"),
    ],
)
def test_only_a_plain_state_dict_of_tensors_is_accepted(payload: bytes, message: str) -> None:
    with pytest.raises(CheckpointFormatError, match=message):
        read_state_dict(_zip_with_pickle(payload))
