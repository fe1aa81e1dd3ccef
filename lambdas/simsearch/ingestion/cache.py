"""The embedding cache: vectors keyed by (content id, model id), kept in the index they are written to.

Each index holds one model's vectors, and each document records the SHA-256 of the bytes it was embedded
from (``content_sha256``, ``simsearch.ids.content_id``) and its model. So before a batch is embedded, one
request (``VectorIndex.vectors_by_content``) asks the target index for the vectors it already holds for
the batch's contents; only the misses reach the model, each distinct content once. A copy, a rename or a
re-upload of indexed bytes then costs its GET, its decode and a share of that request, but no inference;
the same bytes under two keys of one batch are embedded once.

The index is searched, not read by id, so a document becomes a cache entry when it becomes searchable:
at once in the embedded index, after OpenSearch's refresh interval (a second) on a domain. A copy
ingested within that second of its original is embedded again, to the same vector.

A lookup the index cannot answer for now costs the saving, not the batch: every image is embedded, as
without a cache. Any other error is a fault to surface, and is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simsearch.errors import SimsearchError
from simsearch.ingestion.documents import embed_each

if TYPE_CHECKING:
    from PIL import Image

    from simsearch.embedder import Embedder
    from simsearch.index.port import Vector, VectorIndex

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Embedded:
    """One image's vector (or why the model could not give one), and whether the cache had it."""

    vector: Vector | SimsearchError
    reused: bool


class EmbeddingCache:
    """Embeds a batch of images, each known by its content id, with as little inference as possible."""

    def __init__(self, *, index: VectorIndex, embedder: Embedder) -> None:
        self._index = index
        self._embedder = embedder

    def lookup(self, contents: Collection[str]) -> dict[str, Vector]:
        """The vectors the index holds for ``contents``, in one request: the pipeline asks while the
        previous chunk is embedded, so the look-up costs the model no time."""
        if not contents:
            return {}
        return self._known(set(contents))

    def embed(
        self, items: Sequence[tuple[str, Image.Image]], *, known: Mapping[str, Vector]
    ) -> list[Embedded]:
        """One result per ``(content id, image)``, in order: from ``known`` (``lookup``'s answer), or
        from one inference call."""
        if not items:
            return []
        fresh: dict[str, Image.Image] = {}
        for content, image in items:
            if content not in known:
                fresh.setdefault(content, image)  # the same bytes twice in a batch: embedded once
        embedded = dict(zip(fresh, embed_each(self._embedder, list(fresh.values())), strict=True))
        if known:
            logger.info(
                "embeddings reused",
                extra={"reused": len(items) - sum(c in fresh for c, _ in items), "embedded": len(fresh)},
            )
        return [
            Embedded(known[content], reused=True) if content in known else Embedded(embedded[content], False)
            for content, _ in items
        ]

    def _known(self, contents: set[str]) -> dict[str, Vector]:
        try:
            return self._index.vectors_by_content(contents, model_id=self._embedder.model_id)
        except SimsearchError as error:
            if not error.retryable:
                raise
            logger.warning("embedding cache unavailable; embedding every image", extra={"error": str(error)})
            return {}
