"""The OpenSearch index bodies and the engine's score formulas, in one place.

The CDK index bootstrap, the OpenSearch adapter and the tests all build indexes with ``index_body``, so
the deployed mapping is the tested mapping. Standard library only (the CDK app imports it at synth time).

Scores: in k-NN 2.19 (the plugin of OpenSearch 2.19, which the domain runs) the faiss and lucene
engines give the same score for the same cosine similarity ``s``, per space type:

- ``innerproduct``: ``score = 1 + s`` when ``s > 0``, else ``1 / (1 - s)``;
- ``cosinesimil``: ``score = (1 + s) / 2``, the docs' ``(2 - d) / 2`` with ``d = 1 - s``.

Where the plugin computes them (k-NN 2.19.1.0), so an upgrade can be checked against the same places:

- faiss, approximate search: faiss returns the raw inner product ``ip`` (cosinesimil is inner product
  over vectors the plugin normalises: ``AbstractFaissMethod.convertUserToMethodSpaceType``, new in
  2.19.0); ``Faiss.SCORE_TRANSLATIONS`` (``index/engine/faiss/Faiss.java``) scores it as
  ``SpaceType.INNER_PRODUCT.scoreTranslation(-ip)`` or ``SpaceType.COSINESIMIL.scoreTranslation(1 - ip)``
  (``index/SpaceType.java``);
- lucene, and exact search on either engine (a filter that matches at most ``k`` documents, a segment
  without a graph): Lucene 9.12's ``VectorSimilarityFunction.MAXIMUM_INNER_PRODUCT`` and ``COSINE``
  through ``KNNVectorSimilarityFunction``.

Earlier plugins differ: up to 2.18 faiss has no cosinesimil, and nmslib scores it ``1 / (1 + d)``, the
formula older docs give for "nmslib and faiss". Vectors are L2-normalised, so the inner product *is* the
cosine similarity; ``similarity_from_score`` inverts the formula so callers always see cosine similarity
in [-1, 1] next to the raw score. tests/unit/test_index_mapping.py transcribes each path above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simsearch.errors import ConfigError
from simsearch.settings import Engine, SpaceType

VECTOR_FIELD = "vector"
CONTENT_FIELD = "content_sha256"  # the content identity (``simsearch.ids.content_id``): duplicates share it
KEYWORD_FIELDS = (
    "image_id",
    "bucket",
    "key",
    "label",
    CONTENT_FIELD,
    "model_id",
    "etag",
    "content_type",
    "sequencer",
)
INTEGER_FIELDS = ("width", "height", "bytes")
DATE_FIELDS = ("indexed_at",)
SLOW_LOG_THRESHOLDS: dict[str, str] = {
    # OpenSearch writes a slow log only for an index that sets thresholds; the domain publishes those
    # logs to CloudWatch. Warn where a query would eat into the query function's index budget
    # (infra/config.py: 2.5 s per request by default), inform at a fifth of that.
    "search.slowlog.threshold.query.warn": "2s",
    "search.slowlog.threshold.query.info": "500ms",
    "search.slowlog.threshold.fetch.warn": "1s",
    "indexing.slowlog.threshold.index.warn": "5s",
    "indexing.slowlog.threshold.index.info": "1s",
}


def index_body(
    *,
    dim: int,
    engine: Engine,
    space_type: SpaceType,
    m: int,
    ef_construction: int,
    ef_search: int,
    fp16: bool = False,
    model: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The settings and mappings of one versioned vector index.

    ``ef_search`` lands in ``index.knn.algo_param.ef_search`` for faiss; lucene ignores that setting and
    takes ``ef_search`` only per query (``method_parameters``, OpenSearch ≥ 2.16), which the adapter
    always sends, so both engines search with the same ``ef``. ``fp16`` adds faiss's 16-bit scalar
    quantisation encoder (half the memory; lucene has no such encoder). The mapping is strict: a
    misspelt metadata field fails that document instead of silently growing the mapping.
    """
    if fp16 and engine != "faiss":
        raise ConfigError(f"the fp16 encoder exists for the faiss engine only, not {engine!r}")
    parameters: dict[str, Any] = {"m": m, "ef_construction": ef_construction}
    if fp16:
        parameters["encoder"] = {"name": "sq", "parameters": {"type": "fp16"}}
    settings: dict[str, Any] = {"knn": True, **SLOW_LOG_THRESHOLDS}
    if engine == "faiss":
        settings["knn.algo_param.ef_search"] = ef_search
    properties: dict[str, Any] = {
        VECTOR_FIELD: {
            "type": "knn_vector",
            "dimension": dim,
            "method": {"name": "hnsw", "engine": engine, "space_type": space_type, "parameters": parameters},
        },
        **{name: {"type": "keyword"} for name in KEYWORD_FIELDS},
        **{name: {"type": "integer"} for name in INTEGER_FIELDS},
        **{name: {"type": "date"} for name in DATE_FIELDS},
    }
    mappings: dict[str, Any] = {"dynamic": "strict", "properties": properties}
    if model:
        mappings["_meta"] = dict(model)  # which model's vectors these are, and where that model lives
    return {"settings": {"index": settings}, "mappings": mappings}


def failures_body() -> dict[str, Any]:
    """The small index of images that could not be indexed, newest first by ``at``."""
    properties = {
        "key": {"type": "keyword"},
        "etag": {"type": "keyword"},
        "reason_code": {"type": "keyword"},
        "message": {"type": "text"},
        "at": {"type": "date"},
    }
    return {"mappings": {"dynamic": "strict", "properties": properties}}


def similarity_from_score(score: float, *, space_type: SpaceType) -> float:
    """The cosine similarity behind an OpenSearch k-NN score, clamped to [-1, 1] against rounding.

    It takes no engine: in k-NN 2.19 faiss and lucene score alike (module docstring).
    """
    if space_type == "cosinesimil":
        similarity = 2.0 * score - 1.0
    elif score >= 1.0:
        similarity = score - 1.0
    else:
        similarity = 1.0 - 1.0 / score
    return min(1.0, max(-1.0, similarity))


def score_from_similarity(similarity: float, *, space_type: SpaceType) -> float:
    """The OpenSearch k-NN score of a cosine similarity: the inverse of ``similarity_from_score``."""
    if space_type == "cosinesimil":
        return (1.0 + similarity) / 2.0
    if similarity > 0.0:
        return 1.0 + similarity
    return 1.0 / (1.0 - similarity)
