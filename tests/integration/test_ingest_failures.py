"""Bad images, unreadable messages and outages: which messages come back, and what is recorded.

Permanent failures are acknowledged, counted and recorded in the failure log; transient ones are the
only messages in ``batchItemFailures``. Faults reach the handler through its real clients: a proxy
answering 429 in front of the OpenSearch node, an S3 endpoint that refuses connections.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from model.images import photograph
from simsearch.settings import Settings
from tests.factories import sqs_event, sqs_record
from tests.faultproxy import FaultProxy
from tests.image_factories import SVG, animated_gif, encode, heif_like, photo, png_declaring
from tests.integration.conftest import Invoke
from tests.integration.ingest_world import IndexView, Uploads, emitted_metrics, failed_ids, message_ids, only

GOOD = object()  # marks an upload that must be indexed

BAD_INPUTS: dict[str, tuple[Callable[[], bytes], str | object]] = {
    "empty.jpg": (lambda: b"", "invalid_image"),
    "truncated.jpg": (lambda: photograph("china.jpg")[:5000], "invalid_image"),
    "text-named.jpg": (lambda: b"holiday.jpg: this file only contains text\n", "invalid_image"),
    "drawing.svg": (lambda: SVG, "unsupported_image"),
    "iphone.heic": (heif_like, "unsupported_image"),
    "bomb.png": (lambda: png_declaring(30000, 30000), "image_too_large"),
    "animated.gif": (lambda: animated_gif([(255, 0, 0), (0, 0, 255)], size=(64, 64)), GOOD),
    "sixteen-bit.png": (lambda: encode(Image.fromarray(np.full((48, 64), 40000, np.uint16)), "PNG"), GOOD),
    "cmyk.jpg": (lambda: encode(Image.new("CMYK", (64, 48), (0, 80, 160, 0)), "JPEG"), GOOD),
}


def noisy_jpeg(size: tuple[int, int], *, seed: int = 0) -> bytes:
    """A JPEG of random noise: it hardly compresses, so its byte size follows its pixel size."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_a_poison_image_among_good_ones_is_recorded_and_the_batch_succeeds(
    uploads: Uploads, ingest: Invoke, index_view: IndexView, capsys: pytest.CaptureFixture[str]
) -> None:
    uploads.messages()
    for n in range(9):
        uploads.put(f"cats/{n}.jpg", photo(n))
    poison_etag = uploads.put("cats/poison.jpg", photograph("flower.jpg")[:3000])
    event = uploads.event()
    capsys.readouterr()

    response = ingest(event)

    assert response == {"batchItemFailures": []}
    assert index_view.count() == 9
    assert index_view.document("cats/poison.jpg") is None
    failure = index_view.failure_of("cats/poison.jpg")
    assert (failure.etag, failure.reason_code) == (poison_etag, "invalid_image")
    assert "truncated or corrupt" in failure.message or "not a complete image" in failure.message
    assert emitted_metrics(capsys.readouterr().out) == {"ImagesIndexed": 9, "ImagesFailed": 1}


def test_each_kind_of_bad_upload_is_recorded_with_its_reason_and_good_ones_are_indexed(
    uploads: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    uploads.messages()
    for name, (build, _) in BAD_INPUTS.items():
        uploads.put(f"uploads/{name}", build())

    assert ingest(uploads.event()) == {"batchItemFailures": []}

    recorded = {failure.key: failure.reason_code for failure in index_view.failures()}
    for name, (_, expected) in BAD_INPUTS.items():
        key = f"uploads/{name}"
        if expected is GOOD:
            assert index_view.document(key) is not None, key
            assert key not in recorded
        else:
            assert index_view.document(key) is None, key
            assert recorded[key] == expected, key


def test_an_object_over_the_byte_limit_is_refused_from_its_head_and_its_old_vector_removed(
    uploads: Uploads,
    deploy_ingest: Callable[[Settings], Invoke],
    ingest_settings: Settings,
    index_view: IndexView,
) -> None:
    ingest = deploy_ingest(replace(ingest_settings, max_image_bytes=40_000))
    uploads.messages()
    uploads.put("cats/growing.jpg", photo(1))
    ingest(uploads.event())
    assert index_view.document("cats/growing.jpg") is not None

    large = noisy_jpeg((240, 180))
    assert len(large) > 40_000
    etag = uploads.put("cats/growing.jpg", large)
    response = ingest(uploads.event())

    assert response == {"batchItemFailures": []}
    assert (
        index_view.document("cats/growing.jpg") is None
    )  # the old picture's vector no longer describes the object
    failure = index_view.failure_of("cats/growing.jpg")
    assert (failure.etag, failure.reason_code) == (etag, "image_too_large")
    assert failure.message == f"the object is {len(large)} bytes; the limit is 40000 bytes"


def test_an_unreadable_message_is_acknowledged_and_counted(
    uploads: Uploads, ingest: Invoke, index_view: IndexView, capsys: pytest.CaptureFixture[str]
) -> None:
    uploads.messages()
    uploads.put("cats/fine.jpg", photo(1))
    good = uploads.event()["Records"]
    garbage = [
        sqs_record("not json at all"),
        sqs_record({"Message": "an SNS envelope we never subscribed to"}),
    ]
    capsys.readouterr()

    response = ingest(sqs_event(*good, *garbage))

    assert response == {"batchItemFailures": []}
    assert index_view.document("cats/fine.jpg") is not None
    assert emitted_metrics(capsys.readouterr().out) == {"ImagesIndexed": 1, "NotificationsRejected": 2}


def test_a_corrupt_upload_replaced_by_a_good_one_is_indexed(
    uploads: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    uploads.messages()
    uploads.put("cats/retake.jpg", b"\xff\xd8\xff\xe0 half a header")
    ingest(uploads.event())
    uploads.put("cats/retake.jpg", photo(2))

    assert ingest(uploads.event()) == {"batchItemFailures": []}

    assert index_view.document("cats/retake.jpg") is not None


@pytest.mark.slow  # the adapter backs off 1 + 2 + 4 s before it gives the documents back
@pytest.mark.parametrize(
    "ingest_settings", [pytest.param("opensearch", marks=pytest.mark.integration)], indirect=True
)
def test_a_transient_opensearch_failure_returns_only_the_affected_messages_which_then_succeed(
    uploads: Uploads,
    deploy_ingest: Callable[[Settings], Invoke],
    ingest_settings: Settings,
    index_view: IndexView,
    opensearch_url: str,
) -> None:
    uploads.messages()
    for n in range(4):
        uploads.put(f"cats/{n}.jpg", photo(n))
    uploads.put("cats/poison.jpg", b"GIF89a and nothing else")
    uploads.put(f"{ingest_settings.query_upload_prefix}q.jpg", photo(9))
    event = uploads.event()
    affected = message_ids(event)[:4]

    with FaultProxy(opensearch_url) as proxy:
        ingest = deploy_ingest(replace(ingest_settings, opensearch_url=proxy.url))
        fault = proxy.fail(status=429, times=4, path_contains="_bulk")  # every attempt of the adapter
        response = ingest(event)
        assert fault.injected == 4

        assert failed_ids(response) == set(affected)  # not the poison, not the query upload
        assert index_view.count() == 0
        assert index_view.failure_of("cats/poison.jpg").reason_code == "invalid_image"

        assert ingest(only(event, affected)) == {"batchItemFailures": []}  # SQS redelivers those four
    assert index_view.count() == 4


def test_s3_unreachable_returns_every_message_for_redelivery(
    uploads: Uploads,
    deploy_ingest: Callable[[Settings], Invoke],
    ingest_settings: Settings,
    index_view: IndexView,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uploads.messages()
    uploads.put("cats/a.jpg", photo(1))
    uploads.put("cats/b.jpg", photo(2))
    event = uploads.event()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens: connection refused
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    response = deploy_ingest(ingest_settings)(event)

    assert failed_ids(response) == set(message_ids(event))
    assert index_view.count() == 0
