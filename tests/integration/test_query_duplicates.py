"""Exact and near duplicates through the query API, on the real node with the real model.

The corpus of ``tests.query_fixtures`` with china.jpg three more times: twice as the same bytes under
other keys (exact duplicates), twice re-encoded (PNG, JPEG quality 40: near duplicates, as is its
reframed copy) and once with a part of the scene moved (another frame of the shoot, as a stand-in).
Measured with MobileNetV2: the PNG scores 1.0 (the same pixels, other bytes), the JPEG 0.986, the
reframed copy 0.970, the other frame 0.978; any other picture at most 0.6. Only the picture check,
which reads the images from the bucket, tells the frame apart. Every answer is checked against the
OpenAPI document.
"""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from handlers import query
from handlers.api_input import DOCUMENT
from simsearch.ids import content_id
from simsearch.preprocess import decode_image
from tests import api_events, query_fixtures
from tests.api_events import Answer
from tests.image_factories import another_frame, encode
from tests.query_fixtures import LIMITS, Corpus, Indexed, QueryApi, build_corpus

# The fixtures this module uses; ``corpus`` is this module's own (the query API's index is built from it).
embedder, query_api = query_fixtures.embedder, query_fixtures.query_api

pytestmark = pytest.mark.integration

EXACT = ("china-again", "china-again-2")
NEAR = ("china-png", "china-q40", "china-copy")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    made = build_corpus()
    china = made.indexed["china"]
    pixels = decode_image(china.data, limits=LIMITS).rgb
    made.indexed["china-again"] = Indexed("archive/china.img", "photo", china.data)
    made.indexed["china-again-2"] = Indexed("photos/china (1).img", "photo", china.data)
    made.indexed["china-png"] = Indexed("photos/china.png", "photo", encode(pixels, "PNG"))
    made.indexed["china-q40"] = Indexed("photos/china-q40.jpg", "photo", encode(pixels, "JPEG", quality=40))
    made.indexed["china-frame"] = Indexed("photos/china-frame.jpg", "photo", another_frame(pixels))
    return made


def conforms(schema: str, instance: object) -> None:
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": DOCUMENT["components"]}
    )
    validator.validate(instance)


def duplicates(image_id: str, **query_string: Any) -> Answer:
    event = api_events.request("GET", f"/images/{image_id}/duplicates", query=query_string)
    answer = api_events.call(query.handler, event)
    conforms("Duplicates" if answer.status == 200 else "Error", answer.json)
    return answer


def ids_of(api: QueryApi, *names: str) -> set[str]:
    return {api.corpus.indexed[name].id for name in names}


def listed(answer: Answer, kind: str) -> list[str]:
    return [each["id"] for each in answer.json[kind]]


def test_an_image_lists_its_exact_duplicates_apart_from_its_near_ones(query_api: QueryApi) -> None:
    china = query_api.corpus.indexed["china"]

    answer = duplicates(china.id)

    assert answer.status == 200
    assert (answer.json["id"], answer.json["key"]) == (china.id, china.key)
    assert answer.json["content_sha256"] == content_id(china.data)
    assert answer.json["threshold"] == query_api.settings.near_duplicate_threshold == 0.954
    check = answer.json["picture_check"]
    assert check == {"gate": 0.875, "threshold": query_api.settings.picture_match_threshold}
    assert set(listed(answer, "exact")) == ids_of(query_api, *EXACT)
    assert {each["similarity"] for each in answer.json["exact"]} == {1.0}
    assert {each["match"] for each in answer.json["exact"]} == {None}
    assert {each["bytes"] for each in answer.json["exact"]} == {len(china.data)}
    assert set(listed(answer, "near")) == ids_of(query_api, *NEAR)  # not the other frame
    similarities = [each["similarity"] for each in answer.json["near"]]
    assert similarities == sorted(similarities, reverse=True)
    assert min(similarities) >= check["gate"]
    assert min(each["match"] for each in answer.json["near"]) >= check["threshold"]  # each was compared
    assert answer.json["index"] == query_api.serving


def test_the_cosine_alone_takes_another_frame_of_the_shoot_for_the_same_picture(query_api: QueryApi) -> None:
    """What the picture check is for: asked for the same cosine threshold, the frame is a duplicate."""
    answer = duplicates(query_api.corpus.indexed["china"].id, threshold=0.954)
    assert answer.json["picture_check"] is None
    assert set(listed(answer, "near")) == ids_of(query_api, *NEAR, "china-frame")
    assert {each["match"] for each in answer.json["near"]} == {None}  # no image was read


def test_a_copy_lists_the_original_among_its_exact_duplicates(query_api: QueryApi) -> None:
    answer = duplicates(query_api.corpus.indexed["china-again"].id)
    assert set(listed(answer, "exact")) == ids_of(query_api, "china", "china-again-2")
    assert set(listed(answer, "near")) == ids_of(query_api, *NEAR)


def test_a_higher_threshold_keeps_only_the_closest_near_duplicates(query_api: QueryApi) -> None:
    china = query_api.corpus.indexed["china"].id
    assert set(listed(duplicates(china, threshold=0.98), "near")) == ids_of(
        query_api, "china-png", "china-q40"
    )
    answer = duplicates(china, threshold=0.999)
    assert set(listed(answer, "near")) == ids_of(query_api, "china-png")  # the same pixels, other bytes
    assert set(listed(answer, "exact")) == ids_of(query_api, *EXACT)  # exact does not depend on it


def test_an_image_without_duplicates_lists_none(query_api: QueryApi) -> None:
    answer = duplicates(query_api.corpus.indexed["stripes"].id, threshold=0.99)
    assert (answer.json["exact"], answer.json["near"]) == ([], [])


def test_an_unknown_id_is_a_404_and_a_malformed_one_or_threshold_a_400(query_api: QueryApi) -> None:
    unknown = duplicates("f" * 32)
    assert (unknown.status, unknown.error_code) == (404, "not_found")
    assert "f" * 32 in unknown.error_message
    malformed = duplicates("not-an-id")
    assert (malformed.status, malformed.error_code) == (400, "invalid_request")
    china = query_api.corpus.indexed["china"].id
    for threshold in ("1.5", "-0.1", "high"):
        refused = duplicates(china, threshold=threshold)
        assert (refused.status, refused.error_code) == (400, "invalid_request"), threshold
        assert "threshold" in refused.error_message


# duplicates in search results ------------------------------------------------------------------------


def search(event: dict[str, Any]) -> list[dict[str, Any]]:
    answer = api_events.call(query.handler, event)
    assert answer.status == 200, answer.json
    conforms("SearchResponse", answer.json)
    results: list[dict[str, Any]] = answer.json["results"]
    return results


def test_search_results_name_the_earlier_result_they_duplicate(query_api: QueryApi) -> None:
    results = search(api_events.post_image("/search", query_api.corpus.queries["china"], query={"k": 6}))

    copies = [r for r in results if r["id"] in ids_of(query_api, "china", *EXACT)]
    assert len(copies) == 3
    assert {r["content_sha256"] for r in copies} == {content_id(query_api.corpus.indexed["china"].data)}
    assert len({r["similarity"] for r in copies}) == 1  # the same bytes, the same vector
    first = copies[0]["id"]
    assert [r["duplicate_of"] for r in copies] == [None, first, first]
    assert all(r["duplicate_of"] is None for r in results if r not in copies)
    assert all(r["collapsed"] == [] for r in results)


def test_collapsing_folds_exact_duplicates_into_the_first_and_still_returns_k(query_api: QueryApi) -> None:
    query_string = {"k": 3, "collapse_duplicates": "true"}
    results = search(api_events.post_image("/search", query_api.corpus.queries["china"], query=query_string))

    assert len(results) == 3
    copies = ids_of(query_api, "china", *EXACT)
    [kept] = [r for r in results if r["id"] in copies]
    assert set(kept["collapsed"]) == copies - {kept["id"]}
    assert all(r["duplicate_of"] is None for r in results)
    assert len({r["id"] for r in results} & copies) == 1


def test_collapsing_in_a_json_body_counts_contents_not_keys(query_api: QueryApi) -> None:
    flower = query_api.corpus.indexed["flower"]
    body = {"id": flower.id, "k": 100, "collapse_duplicates": True}

    results = search(api_events.post_json("/search", body))

    contents = {content_id(item.data) for item in query_api.corpus.indexed.values()}
    assert len(results) == len(contents) - 1  # every other content once; the flower itself is left out
    collapsed = [r for r in results if r["collapsed"]]
    assert len(collapsed) == 1 and len(collapsed[0]["collapsed"]) == 2


def test_collapse_duplicates_must_be_true_or_false(query_api: QueryApi) -> None:
    event = api_events.post_image(
        "/search", query_api.corpus.queries["china"], query={"collapse_duplicates": "yes"}
    )
    answer = api_events.call(query.handler, event)
    assert (answer.status, answer.error_code) == (400, "invalid_request")
    assert "collapse_duplicates" in answer.error_message
