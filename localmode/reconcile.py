"""Make the index mirror the bucket when the local stack starts.

moto keeps the bucket in memory while the index persists, so after a restart, and above all after a
kill -9 in the middle of ingestion, the two disagree: documents whose images no longer exist (broken
thumbnails, stale search results, a wrong count on ``/health``) and images that were never indexed.
``localmode.stack.started`` therefore restores the images folder into the bucket before the bucket
notifies anyone, then compares the two here: documents without their object are removed, and objects
the index does not hold at their current ETag are listed so the stack sends them through ingestion
again. ``Reconciled.report`` says what was done, key by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from simsearch.index.port import IndexedImage, VectorIndex
    from simsearch.storage import ImageStore

SHOWN_KEYS: Final = 20
"""How many keys a report names of each kind before it gives only the count of the rest."""

_DELETE_BATCH = 500


@dataclass(frozen=True, kw_only=True)
class Reconciled:
    """What starting changed: the documents removed (their keys) and the objects to index again."""

    removed: tuple[str, ...]
    to_index: tuple[str, ...]

    def report(self) -> str:
        """One line per kind of change (none when the index already mirrored the bucket)."""
        lines = []
        if self.removed:
            lines.append(
                f"removed {_count(self.removed, 'document')} whose images are not in the bucket "
                f"(moto keeps only the images folder across restarts): {_shown(self.removed)}"
            )
        if self.to_index:
            lines.append(
                f"re-queued {_count(self.to_index, 'image')} the index did not hold: {_shown(self.to_index)}"
            )
        return "\n".join(lines)


def reconcile(
    index: VectorIndex,
    images: ImageStore,
    *,
    bucket: str,
    ignored_prefix: str,
    also: Sequence[VectorIndex] = (),
) -> Reconciled:
    """Remove the documents of objects not in ``bucket``; list the objects to index (not their documents).

    ``index`` is the one that serves; ``also`` are the others that take writes (a re-index's new
    index), which lose their orphans too but are filled by a backfill, not from here. Objects under
    ``ignored_prefix`` (query uploads) are never indexed, so they are never listed.
    """
    stored = {obj.key: obj.etag for obj in images.list(bucket, "") if not obj.key.startswith(ignored_prefix)}
    indexed: dict[str, str | None] = {}
    removed: set[str] = set()
    for each in (index, *also):
        orphans: list[IndexedImage] = []
        for item in each.scan():
            if item.metadata.bucket == bucket and item.metadata.key in stored:
                if each is index:
                    indexed[item.metadata.key] = item.metadata.etag
            else:
                orphans.append(item)
        for start in range(0, len(orphans), _DELETE_BATCH):
            batch = orphans[start : start + _DELETE_BATCH]
            done = set(each.delete([item.image_id for item in batch]).succeeded)
            removed |= {_where(item, bucket) for item in batch if item.image_id in done}
    to_index = sorted(key for key, etag in stored.items() if indexed.get(key) != etag)
    return Reconciled(removed=tuple(sorted(removed)), to_index=tuple(to_index))


def _where(item: IndexedImage, bucket: str) -> str:
    """The key, with its bucket when that is not the stack's."""
    key, other = item.metadata.key, item.metadata.bucket
    return key if other == bucket else f"s3://{other}/{key}"


def _count(keys: tuple[str, ...], noun: str) -> str:
    return f"1 {noun}" if len(keys) == 1 else f"{len(keys)} {noun}s"


def _shown(keys: tuple[str, ...]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown if len(keys) <= SHOWN_KEYS else f"{shown} and {len(keys) - SHOWN_KEYS} more"
