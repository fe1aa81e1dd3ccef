"""What to do with one key, decided from what is true now: a pure function of what a look found.

Notifications are hints (see ``simsearch.ingestion``), so nothing here reads an event: the decision
rests on the object as a HEAD found it, on the document the index holds for its key, on the model in
use and on the limits. A look that failed never gets here; ``failures`` decides about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simsearch.errors import ImageTooLargeError, SimsearchError
from simsearch.labels import label_for

if TYPE_CHECKING:
    from simsearch.index.port import Document, IndexedImage
    from simsearch.ingestion.changes import Target
    from simsearch.preprocess import ImageLimits
    from simsearch.storage import StoredObject


@dataclass(frozen=True, kw_only=True, slots=True)
class Rules:
    """What decisions depend on besides the key itself: the model in use, the limits, the query prefix."""

    model_id: str
    limits: ImageLimits
    query_upload_prefix: str

    def ignores(self, key: str) -> bool:
        """A query upload: the query API puts them under their own prefix, and they are never indexed."""
        return bool(self.query_upload_prefix) and key.startswith(self.query_upload_prefix)


@dataclass(frozen=True, slots=True)
class Gone:
    """A key whose object does not exist (any more)."""

    target: Target


@dataclass(frozen=True, slots=True)
class Present:
    """An object that exists, and the document the index holds for its key (None if none; a lookup
    leaves the vector out, since deciding needs the metadata alone)."""

    target: Target
    obj: StoredObject
    indexed: Document | IndexedImage | None


@dataclass(frozen=True, slots=True)
class Remove:
    """The object is gone: remove its document (removing what is not there is fine)."""

    target: Target


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The index already holds this content, for this model, with the label the object has now."""

    found: Present


@dataclass(frozen=True, slots=True)
class Refuse:
    """The object cannot be indexed, for ``error``; the failure policy says what follows."""

    found: Present
    error: SimsearchError


@dataclass(frozen=True, slots=True)
class Index:
    """Read, embed and write the object."""

    found: Present


Decision = Remove | Unchanged | Refuse | Index


def decide(found: Gone | Present, rules: Rules) -> Decision:
    """Remove a gone object's document; keep one that is up to date; refuse what is too large; else index."""
    if isinstance(found, Gone):
        return Remove(found.target)
    if is_up_to_date(found, model_id=rules.model_id):
        return Unchanged(found)
    size, limit = found.obj.size, rules.limits.max_bytes
    if size > limit:
        return Refuse(found, ImageTooLargeError(f"the object is {size} bytes; the limit is {limit} bytes"))
    return Index(found)


def is_up_to_date(found: Present, *, model_id: str) -> bool:
    """The index holds this very content for this model, with the label the object has now."""
    if found.indexed is None:
        return False
    stored = found.indexed.metadata
    return (
        stored.etag == found.obj.etag
        and stored.model_id == model_id
        and stored.label == label_for(found.obj.key, found.obj.metadata)
    )
