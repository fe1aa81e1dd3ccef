"""How the other commands find a running local stack: ``serve`` leaves a note while it runs.

The note (``.cache/localmode/stack.json``) holds the API URL, the moto resources and the settings
(``Settings.to_env()``), so ``imgsearch search``, ``ingest PATH`` and ``failures`` talk to the same
bucket and index as the stack without repeating its options. ``serve`` removes it when it stops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from localmode.cloud import LocalCloud
from localmode.errors import CommandFailed
from simsearch.errors import ConfigError
from simsearch.settings import ENV_PREFIX, Settings

if TYPE_CHECKING:
    from simsearch.storage import ImageStore

NOTE = Path(".cache/localmode/stack.json")


@dataclass(frozen=True, kw_only=True)
class RunningStack:
    """What another process needs to reach a stack that ``imgsearch serve`` started."""

    url: str
    cloud: LocalCloud
    settings: Settings


@contextmanager
def announced(running: RunningStack, *, note: Path | None = None) -> Iterator[None]:
    """Write the note (default ``NOTE``) for the block's duration."""
    note = note or NOTE
    payload = {"url": running.url, "cloud": asdict(running.cloud), "settings": running.settings.to_env()}
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    except OSError as error:
        folder = next(parent for parent in note.resolve().parents if parent.is_dir())  # the one to fix
        raise ConfigError(
            f"cannot write {note.resolve()}, where the other imgsearch commands find the running stack "
            f"({error.strerror}: {error.filename}); make {folder} writable by this user, or run "
            "imgsearch from a folder where it is"
        ) from error
    try:
        yield
    finally:
        note.unlink(missing_ok=True)


def find_running(note: Path | None = None) -> RunningStack | None:
    """The stack the note (default ``NOTE``) describes, or None when no ``serve`` has left one."""
    try:
        payload = json.loads((note or NOTE).read_text("utf-8"))
    except FileNotFoundError:
        return None
    return RunningStack(
        url=payload["url"],
        cloud=LocalCloud(**payload["cloud"]),
        settings=Settings.from_env(payload["settings"]),
    )


def require_running() -> RunningStack:
    """The running stack, or ``CommandFailed`` saying how to start one."""
    running = find_running()
    if running is None:
        raise CommandFailed("no local stack is running: start one with `imgsearch serve` (or `make demo`)")
    return running


def target_settings() -> Settings:
    """``SIMSEARCH_*`` variables when set (a deployment's index), else the running local stack's."""
    if _deployment_named():
        return Settings.from_env()
    return require_running().settings


def target_images() -> tuple[Settings, ImageStore]:
    """``target_settings()`` and a store that reads its bucket: AWS's S3, or the running stack's moto."""
    from simsearch.bootstrap import INGEST_S3, image_store
    from simsearch.storage import S3ImageStore

    if _deployment_named():
        settings = Settings.from_env()
        return settings, image_store(settings, config=INGEST_S3)
    running = require_running()
    return running.settings, S3ImageStore(running.cloud.client("s3", config=INGEST_S3))


def _deployment_named() -> bool:
    return any(name.startswith(ENV_PREFIX) for name in os.environ)
