"""The index body, the score formulas, index names and image ids: the pure parts of the index package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simsearch.errors import ConfigError
from simsearch.ids import image_id_for
from simsearch.index.mapping import (
    KEYWORD_FIELDS,
    index_body,
    score_from_similarity,
    similarity_from_score,
)
from simsearch.index.naming import alias_name, failures_name, version_name
from simsearch.settings import SpaceType

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


@pytest.mark.parametrize(
    ("similarity", "score"),
    [(1.0, 2.0), (0.5, 1.5), (0.0, 1.0), (-0.5, 1 / 1.5), (-1.0, 0.5)],
)
def test_innerproduct_scores_follow_the_documented_formula(similarity: float, score: float) -> None:
    assert score_from_similarity(similarity, space_type="innerproduct") == pytest.approx(score)
    assert similarity_from_score(score, space_type="innerproduct") == pytest.approx(similarity)


@pytest.mark.parametrize(("similarity", "score"), [(1.0, 1.0), (0.5, 0.75), (0.0, 0.5), (-1.0, 0.0)])
def test_cosinesimil_scores_are_one_plus_cosine_over_two(similarity: float, score: float) -> None:
    assert score_from_similarity(similarity, space_type="cosinesimil") == pytest.approx(score)
    assert similarity_from_score(score, space_type="cosinesimil") == pytest.approx(similarity)


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


def test_the_cdk_app_can_import_names_and_mapping_without_numpy() -> None:
    """infra/ builds the index body and names at synth time, where the numpy stack has no place."""
    lambdas = Path(__file__).resolve().parents[2] / "lambdas"
    code = "import sys, simsearch.index.mapping, simsearch.index.naming; sys.exit('numpy' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(lambdas)})
    assert completed.returncode == 0
