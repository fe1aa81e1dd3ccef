"""The query API finds the expected neighbours for every kind of input, on the real node with the real model.

Each test calls ``handlers.query.handler`` with an API Gateway event; images live in moto S3, so the
presigned URLs in the answers are fetched and compared with the stored bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from handlers import query
from handlers.api_input import DOCUMENT
from simsearch.embedder import OnnxEmbedder
from simsearch.storage import reuse_seconds
from tests import api_events, query_fixtures
from tests.api_events import Answer, b64
from tests.query_fixtures import LIMITS, PICTURES, QueryApi

# The fixtures this module uses (a `pytest_plugins` line in tests/conftest.py would make this unnecessary).
embedder, corpus, query_api = (
    query_fixtures.embedder,
    query_fixtures.corpus,
    query_fixtures.query_api,
)

pytestmark = pytest.mark.integration


def search(event: dict[str, Any]) -> Answer:
    answer = api_events.call(query.handler, event)
    assert answer.status == 200, answer.json
    conforms("SearchResponse", answer.json)
    return answer


def conforms(schema: str, instance: object) -> None:
    """``instance`` matches the OpenAPI document's schema of that name."""
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": DOCUMENT["components"]}
    )
    validator.validate(instance)


def ids(answer: Answer) -> list[str]:
    return [result["id"] for result in answer.json["results"]]


@pytest.mark.parametrize("name", PICTURES)
def test_a_raw_image_body_finds_the_original_and_its_copy_first(query_api: QueryApi, name: str) -> None:
    answer = search(api_events.post_image("/search", query_api.corpus.queries[name], query={"k": 3}))
    assert set(ids(answer)[:2]) == query_api.corpus.family(name)
    assert len(ids(answer)) == 3


def test_an_image_sent_as_octet_stream_is_read_by_its_bytes(query_api: QueryApi) -> None:
    """What the CLI and the web page send for a file whose type they cannot name."""
    data = query_api.corpus.queries[PICTURES[0]]
    answer = search(api_events.post_image("/search", data, content_type="application/octet-stream"))
    assert set(ids(answer)[:2]) == query_api.corpus.family(PICTURES[0])


def test_a_base64_image_in_json_finds_its_family(query_api: QueryApi) -> None:
    answer = search(api_events.post_json("/search", {"image": b64(query_api.corpus.queries["rings"])}))
    assert set(ids(answer)[:2]) == query_api.corpus.family("rings")


def test_a_vector_finds_its_family(query_api: QueryApi, embedder: OnnxEmbedder) -> None:
    vector = embedder.embed_images([query_api.corpus.queries["flower"]], limits=LIMITS)[0]
    answer = search(api_events.post_json("/search", {"vector": vector.tolist(), "k": 2}))
    assert set(ids(answer)) == query_api.corpus.family("flower")


def test_an_image_uploaded_through_the_presigned_post_is_searched_by_its_key(query_api: QueryApi) -> None:
    form = api_events.call(query.handler, api_events.request("POST", "/uploads"))
    assert form.status == 200
    conforms("UploadForm", form.json)
    assert form.json["key"].startswith(query_api.settings.query_upload_prefix)
    upload = requests.post(
        form.json["url"],
        data={**form.json["fields"], "Content-Type": "image/jpeg"},
        files={"file": ("query.jpg", query_api.corpus.queries["checker"])},
        timeout=10,
    )
    assert upload.status_code in (200, 201, 204), upload.text
    answer = search(api_events.post_json("/search", {"s3_key": form.json["key"]}))
    assert set(ids(answer)[:2]) == query_api.corpus.family("checker")


def test_searching_by_id_finds_its_copy_and_leaves_the_image_itself_out(query_api: QueryApi) -> None:
    original = query_api.corpus.indexed["stripes"]
    answer = search(api_events.post_json("/search", {"id": original.id, "k": 100}))
    assert ids(answer)[0] == query_api.corpus.indexed["stripes-copy"].id
    assert original.id not in ids(answer)
    assert len(ids(answer)) == len(query_api.corpus.indexed) - 1


def test_results_come_most_similar_first_with_the_model_and_index_named(query_api: QueryApi) -> None:
    answer = search(api_events.post_image("/search", query_api.corpus.queries["china"], query={"k": 100}))
    similarities = [result["similarity"] for result in answer.json["results"]]
    assert similarities == sorted(similarities, reverse=True)
    assert answer.json["index"] == query_api.serving
    assert answer.json["model_id"] in query_api.index.name
    assert answer.json["took_ms"] > 0


def test_a_label_filter_returns_only_that_label(query_api: QueryApi) -> None:
    answer = search(
        api_events.post_json(
            "/search", {"image": b64(query_api.corpus.queries["china"]), "filter": {"label": "pattern"}}
        )
    )
    labels = {result["label"] for result in answer.json["results"]}
    assert labels == {"pattern"}
    assert len(answer.json["results"]) == 8  # all four patterns and their copies, though the query is a photo


def test_a_prefix_filter_in_the_query_string_applies_to_a_raw_image(query_api: QueryApi) -> None:
    answer = search(
        api_events.post_image("/search", query_api.corpus.queries["china"], query={"prefix": "photos/flower"})
    )
    assert set(ids(answer)) == query_api.corpus.family("flower")


@pytest.mark.usefixtures("query_api")
def test_label_and_prefix_together_must_both_match(embedder: OnnxEmbedder) -> None:
    query_body = {"vector": [1.0] * embedder.dim, "filter": {"label": "photo", "prefix": "patterns/"}}
    assert search(api_events.post_json("/search", query_body)).json["results"] == []


def test_parameters_in_the_body_win_over_the_query_string_and_filters_combine(query_api: QueryApi) -> None:
    body = {"image": b64(query_api.corpus.queries["china"]), "k": 3, "filter": {"prefix": "photos/flower"}}
    answer = search(api_events.post_json("/search", body, query={"k": 1, "label": "photo"}))
    assert set(ids(answer)) == query_api.corpus.family("flower")  # k=3 allows more, the filter leaves two


def test_min_similarity_keeps_only_the_close_family(query_api: QueryApi) -> None:
    answer = search(
        api_events.post_image("/search", query_api.corpus.queries["blobs"], query={"min_similarity": 0.8})
    )
    assert set(ids(answer)) == query_api.corpus.family("blobs")


@pytest.mark.parametrize("k", [1, 5, 100])
def test_k_bounds_the_number_of_results(query_api: QueryApi, k: int) -> None:
    answer = search(
        api_events.post_json("/search", {"image": b64(query_api.corpus.queries["rings"]), "k": k})
    )
    assert len(answer.json["results"]) == min(k, len(query_api.corpus.indexed))


def test_k_defaults_to_ten(query_api: QueryApi) -> None:
    answer = search(api_events.post_image("/search", query_api.corpus.queries["rings"]))
    assert len(answer.json["results"]) == 10


def test_every_result_url_fetches_exactly_the_stored_image(query_api: QueryApi) -> None:
    answer = search(api_events.post_image("/search", query_api.corpus.queries["flower"], query={"k": 100}))
    stored = {item.id: item.data for item in query_api.corpus.indexed.values()}
    for result in answer.json["results"]:
        fetched = requests.get(result["url"], timeout=10)
        assert fetched.status_code == 200
        assert fetched.content == stored[result["id"]]
        ttl = query_api.settings.presign_ttl_seconds  # at least that long, however often it is reused
        assert f"X-Amz-Expires={ttl + reuse_seconds(ttl)}" in result["url"]


def test_an_image_is_described_by_its_id_with_a_working_url(query_api: QueryApi) -> None:
    item = query_api.corpus.indexed["checker-copy"]
    answer = api_events.call(query.handler, api_events.get(f"/images/{item.id}"))
    assert answer.status == 200
    conforms("Image", answer.json)
    assert (answer.json["id"], answer.json["key"], answer.json["label"]) == (item.id, item.key, item.label)
    assert (answer.json["content_type"], answer.json["bytes"]) == ("image/jpeg", len(item.data))
    assert requests.get(answer.json["url"], timeout=10).content == item.data


def test_health_names_the_model_and_index_and_counts_the_documents(query_api: QueryApi) -> None:
    answer = api_events.call(query.handler, api_events.get("/health"))
    assert answer.status == 200
    conforms("Health", answer.json)
    assert answer.json["documents"] == len(query_api.corpus.indexed)
    assert answer.json["index"] == query_api.serving


@pytest.mark.usefixtures("query_api")
def test_the_openapi_document_is_served_as_shipped() -> None:
    answer = api_events.call(query.handler, api_events.get("/openapi.json"))
    assert answer.status == 200
    assert answer.json == json.loads(Path(query.__file__).with_name("openapi.json").read_text("utf-8"))


@pytest.mark.usefixtures("query_api")
def test_cors_headers_let_a_web_page_from_another_origin_call_the_api() -> None:
    event = api_events.request("GET", "/health", headers={"Origin": "http://localhost:8000"})
    assert api_events.call(query.handler, event).headers["access-control-allow-origin"] == "*"
    preflight = api_events.request(
        "OPTIONS",
        "/search",
        headers={"Origin": "http://localhost:8000", "Access-Control-Request-Method": "POST"},
    )
    answer = api_events.call(query.handler, preflight)
    assert answer.status == 204
    assert "POST" in answer.headers["access-control-allow-methods"]
