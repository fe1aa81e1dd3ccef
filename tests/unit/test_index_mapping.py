"""The index body, the score formulas, index names and image ids: the pure parts of the index package.

The score formulas are checked against transcriptions of each engine's scoring code (k-NN 2.19.1.0, Lucene
9.12.1), the docs' worked numbers, and faiss itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from simsearch.errors import ConfigError
from simsearch.ids import content_id, image_id_for
from simsearch.index.mapping import (
    KEYWORD_FIELDS,
    index_body,
    score_from_similarity,
    similarity_from_score,
)
from simsearch.index.naming import alias_name, failures_name, version_name
from simsearch.settings import SpaceType
from tests.index_factories import unit_vectors

SIMILARITIES = [-1.0, -0.75, -0.5, -1e-6, 0.0, 1e-6, 0.25, 0.5, 0.999, 1.0]


def body(**overrides: object) -> dict[str, object]:
    arguments: dict[str, object] = {
        "dim": 1280,
        "engine": "faiss",
        "space_type": "innerproduct",
        "m": 16,
        "ef_construction": 128,
        "ef_search": 128,
    } | overrides
    return index_body(**arguments)  # type: ignore[arg-type]


def test_the_vector_field_pins_method_engine_space_and_graph_parameters() -> None:
    vector = body(m=24, ef_construction=256)["mappings"]["properties"]["vector"]  # type: ignore[index]
    assert vector == {
        "type": "knn_vector",
        "dimension": 1280,
        "method": {
            "name": "hnsw",
            "engine": "faiss",
            "space_type": "innerproduct",
            "parameters": {"m": 24, "ef_construction": 256},
        },
    }


def test_faiss_takes_ef_search_from_the_index_setting_lucene_from_the_query() -> None:
    faiss, lucene = (
        body(engine=engine, ef_search=200)["settings"]["index"] for engine in ("faiss", "lucene")
    )
    assert faiss["knn"] is True and faiss["knn.algo_param.ef_search"] == 200
    assert lucene["knn"] is True and "knn.algo_param.ef_search" not in lucene


def test_fp16_adds_the_faiss_scalar_quantisation_encoder() -> None:
    parameters = body(fp16=True)["mappings"]["properties"]["vector"]["method"]["parameters"]  # type: ignore[index]
    assert parameters["encoder"] == {"name": "sq", "parameters": {"type": "fp16"}}


def test_fp16_on_lucene_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fp16"):
        body(engine="lucene", fp16=True)


def test_metadata_fields_are_typed_and_the_mapping_is_strict() -> None:
    mappings = body()["mappings"]
    properties = mappings["properties"]  # type: ignore[index]
    assert mappings["dynamic"] == "strict"  # type: ignore[index]
    assert {name for name, field in properties.items() if field == {"type": "keyword"}} == set(KEYWORD_FIELDS)
    assert {"image_id", "bucket", "key", "label", "content_sha256", "model_id"} <= set(KEYWORD_FIELDS)
    assert properties["width"] == properties["height"] == properties["bytes"] == {"type": "integer"}
    assert properties["indexed_at"] == {"type": "date"}


def faiss_approximate_score(inner_product: float, *, space_type: SpaceType) -> float:
    """k-NN 2.19.1.0's score for a hit of faiss's HNSW search, transcribed from its Java.

    faiss returns the raw inner product (cosinesimil is inner product over normalised vectors);
    ``Faiss.SCORE_TRANSLATIONS`` (index/engine/faiss/Faiss.java) hands ``SpaceType.scoreTranslation``
    (index/SpaceType.java) ``-ip`` for innerproduct and ``1 - ip`` for cosinesimil.
    """
    if space_type == "innerproduct":
        raw = -1 * inner_product
        return 1 / (1 + raw) if raw >= 0 else -raw + 1  # SpaceType.INNER_PRODUCT.scoreTranslation
    raw = 1 - inner_product
    return max((2.0 - raw) / 2.0, 0.0)  # SpaceType.COSINESIMIL.scoreTranslation


def lucene_score(cosine: float, *, space_type: SpaceType) -> float:
    """Lucene 9.12.1's VectorSimilarityFunction, the score of lucene and of exact search on either engine.

    ``MAXIMUM_INNER_PRODUCT`` is ``VectorUtil.scaleMaxInnerProductScore(dot)``; ``COSINE`` is
    ``max((1 + cos) / 2, 0)``.
    """
    if space_type == "innerproduct":
        return 1 / (1 + -1 * cosine) if cosine < 0 else cosine + 1
    return max((1 + cosine) / 2, 0.0)


SCORE_PATHS = {"faiss": faiss_approximate_score, "lucene": lucene_score}

# Worked by hand from the "Spaces" table of the OpenSearch 2.19 docs (field-types/supported-field-types/
# knn-spaces): innerproduct, faiss: d = -ip, score 1 / (1 + d) if d >= 0 else -d + 1; lucene: d = ip,
# score d + 1 if d > 0 else 1 / (1 + (-1 * d)); cosinesimil, every engine: d = 1 - cos, score (2 - d) / 2.
WORKED_SCORES: list[tuple[SpaceType, float, float]] = [
    ("innerproduct", 1.0, 2.0),
    ("innerproduct", 0.5, 1.5),
    ("innerproduct", 0.0, 1.0),
    ("innerproduct", -0.5, 1 / 1.5),
    ("innerproduct", -1.0, 0.5),
    ("cosinesimil", 1.0, 1.0),
    ("cosinesimil", 0.5, 0.75),
    ("cosinesimil", 0.0, 0.5),
    ("cosinesimil", -0.5, 0.25),
    ("cosinesimil", -1.0, 0.0),
]


@pytest.mark.parametrize("engine", sorted(SCORE_PATHS))
@pytest.mark.parametrize(("space_type", "similarity", "score"), WORKED_SCORES)
def test_each_engine_scores_the_documented_numbers(
    engine: str, space_type: SpaceType, similarity: float, score: float
) -> None:
    assert SCORE_PATHS[engine](similarity, space_type=space_type) == pytest.approx(score)
    assert score_from_similarity(similarity, space_type=space_type) == pytest.approx(score)
    assert similarity_from_score(score, space_type=space_type) == pytest.approx(similarity)


@pytest.mark.parametrize("engine", sorted(SCORE_PATHS))
@pytest.mark.parametrize("space_type", ["innerproduct", "cosinesimil"])
def test_our_conversion_inverts_each_engines_score_across_the_whole_range(
    engine: str, space_type: SpaceType
) -> None:
    similarities = np.linspace(-1.0, 1.0, 2001)
    scores = [SCORE_PATHS[engine](float(s), space_type=space_type) for s in similarities]
    back = [similarity_from_score(score, space_type=space_type) for score in scores]
    assert back == pytest.approx(similarities.tolist(), abs=1e-12)


@pytest.mark.parametrize("space_type", ["innerproduct", "cosinesimil"])
def test_scores_rise_with_similarity_and_convert_back_exactly(space_type: SpaceType) -> None:
    scores = [score_from_similarity(s, space_type=space_type) for s in SIMILARITIES]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    back = [similarity_from_score(s, space_type=space_type) for s in scores]
    assert back == pytest.approx(SIMILARITIES, abs=1e-12)


@pytest.mark.parametrize("space_type", ["innerproduct", "cosinesimil"])
def test_rounding_beyond_one_is_clamped(space_type: SpaceType) -> None:
    above = score_from_similarity(1.0, space_type=space_type) * (1 + 1e-7)
    assert similarity_from_score(above, space_type=space_type) == 1.0


@pytest.mark.parametrize("description", ["HNSW16,Flat", "HNSW16,SQfp16"])
@pytest.mark.parametrize("space_type", ["innerproduct", "cosinesimil"])
def test_real_faiss_distances_through_the_plugins_translation_give_back_the_cosine(
    description: str, space_type: SpaceType
) -> None:
    """The plugin's faiss path with faiss itself in place of the JNI library.

    For both space types k-NN 2.19.1.0 builds ``index_factory(dim, "HNSW<m>,Flat", METRIC_INNER_PRODUCT)``,
    ``"HNSW<m>,SQfp16"`` with the fp16 encoder (FaissHNSWMethod, FaissSQEncoder; TranslateSpaceToMetric in
    jni/src/faiss_wrapper.cpp) and passes each hit's distance on as is (``KNNQueryResult(ids[i], dis[i])``).
    faiss must report the inner product itself, larger meaning closer, for Faiss.java's negation to be
    right; fp16 storage costs about 1e-3 of similarity. faiss-cpu from PyPI stands in for the faiss commit
    the plugin pins (0cbc2a88). k is every vector, so negative inner products are covered too.
    """
    queries = unit_vectors(4, 8, seed=12)
    vectors = np.concatenate([unit_vectors(300, 8, seed=11), queries])  # 8 dimensions: cosines near ±1
    index = faiss.index_factory(8, description, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    params = faiss.SearchParametersHNSW(efSearch=256)  # type: ignore[attr-defined]  # absent from the stubs
    distances, ids = index.search(queries, len(vectors), params=params)
    tolerance = 1e-5 if description.endswith("Flat") else 2e-3
    for query, all_distances, all_ids in zip(queries, distances, ids, strict=True):
        found = all_ids >= 0  # a graph search may leave a slot or two empty (id -1)
        row_distances, cosines = all_distances[found], vectors[all_ids[found]] @ query
        assert row_distances == pytest.approx(cosines, abs=tolerance)
        assert max(cosines) > 0.99 and min(cosines) < -0.5  # both branches of the innerproduct formula
        scores = [faiss_approximate_score(float(d), space_type=space_type) for d in row_distances]
        back = [similarity_from_score(score, space_type=space_type) for score in scores]
        assert back == pytest.approx(cosines, abs=tolerance)


def test_alias_version_and_failure_index_names() -> None:
    alias = alias_name("images", "mobilenetv2-imagenet1k_v2-c1")
    assert alias == "images-mobilenetv2-imagenet1k_v2-c1"
    assert version_name(alias, 3) == f"{alias}-v3"
    assert failures_name("images") == "images-failures"


@pytest.mark.parametrize(
    ("prefix", "model_id"),
    [("Images", "m"), ("images", "M1"), ("_images", "m"), ("images", "a/b"), ("im ages", "m"), ("", "m")],
)
def test_names_opensearch_would_reject_are_config_errors(prefix: str, model_id: str) -> None:
    with pytest.raises(ConfigError, match="index name"):
        alias_name(prefix, model_id)


def test_too_long_names_and_version_zero_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="too long"):
        alias_name("images", "m" * 250)
    with pytest.raises(ConfigError, match="start at 1"):
        version_name("images-m", 0)


def test_an_image_id_never_changes_for_the_same_object() -> None:
    """Stored documents are keyed by it: a new scheme would orphan every indexed image."""
    assert image_id_for("photos", "cats/a b.jpg") == "e59611dcdcb5a17d4a4d544d90227571"


def test_image_ids_differ_between_objects() -> None:
    ids = {
        image_id_for(bucket, key)
        for bucket, key in [("photos", "a.jpg"), ("photos2", "a.jpg"), ("photos", "a+.jpg")]
    }
    assert len(ids) == 3


def test_a_content_id_is_the_sha256_of_the_bytes() -> None:
    """FIPS 180-2's own example ("abc"), so the stored identity matches any other sha256 tool's."""
    assert content_id(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_the_cdk_app_can_import_names_and_mapping_without_numpy() -> None:
    """infra/ builds the index body and names at synth time, where the numpy stack has no place."""
    lambdas = Path(__file__).resolve().parents[2] / "lambdas"
    code = "import sys, simsearch.index.mapping, simsearch.index.naming; sys.exit('numpy' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(lambdas)})
    assert completed.returncode == 0
