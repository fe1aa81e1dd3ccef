"""Reading S3 notifications out of SQS bodies, ordering sequencers, choosing labels, and which messages
of a batch come back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.notifications import NotificationBatch, ObjectEvent, parse_message
from simsearch.backfill import parse_s3_url
from simsearch.errors import InvalidNotificationError, InvalidRequestError
from simsearch.ingestion import Change, KeyOutcome
from simsearch.ingestion.changes import newest_sequencer
from simsearch.labels import label_for
from tests.factories import s3_notification, s3_record, s3_test_event


def body(payload: Any) -> str:
    return json.dumps(payload)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ObjectCreated:Put", "created"),
        ("ObjectCreated:Post", "created"),
        ("ObjectCreated:Copy", "created"),
        ("ObjectCreated:CompleteMultipartUpload", "created"),
        ("ObjectRemoved:Delete", "removed"),
        ("ObjectRemoved:DeleteMarkerCreated", "removed"),
        ("LifecycleExpiration:Delete", "removed"),
        ("ObjectRestore:Completed", "other"),
        ("ObjectTagging:Put", "other"),
    ],
)
def test_each_event_name_has_its_kind(name: str, kind: str) -> None:
    (event,) = parse_message(body(s3_notification(s3_record(name, "a.jpg")))).events
    assert event.kind == kind


def test_a_creation_record_becomes_a_typed_event() -> None:
    record = s3_record(
        "ObjectCreated:Put", "cats/a.jpg", bucket="photos", etag="abc123", size=2048, sequencer="0A1B"
    )

    notification = parse_message(body(s3_notification(record)))

    assert notification.events == (
        ObjectEvent(
            name="ObjectCreated:Put",
            bucket="photos",
            key="cats/a.jpg",
            etag="abc123",
            size=2048,
            sequencer="0A1B",
        ),
    )
    assert not notification.is_test


def test_a_removal_record_has_no_etag_or_size() -> None:
    (event,) = parse_message(body(s3_notification(s3_record("ObjectRemoved:Delete", "a.jpg")))).events
    assert (event.etag, event.size, event.sequencer) == (None, None, None)


@pytest.mark.parametrize(
    ("on_the_wire", "key"),
    [
        ("a+b.jpg", "a b.jpg"),
        ("1%2B1.jpg", "1+1.jpg"),
        ("cats%2Fa.jpg", "cats/a.jpg"),  # moto encodes the slash too; S3 leaves it: both decode
        ("Gr%C3%B6%C3%9Fe+%E7%8C%AB.jpg", "Größe 猫.jpg"),
        ("100%25.jpg", "100%.jpg"),
    ],
)
def test_keys_are_url_decoded(on_the_wire: str, key: str) -> None:
    record = s3_record("ObjectCreated:Put", "placeholder")
    record["s3"]["object"]["key"] = on_the_wire
    (event,) = parse_message(body(s3_notification(record))).events
    assert event.key == key


def test_the_factory_encodes_keys_as_s3_does() -> None:
    record = s3_record("ObjectCreated:Put", "a b+c/ü.jpg")
    assert record["s3"]["object"]["key"] == "a+b%2Bc%2F%C3%BC.jpg"
    (event,) = parse_message(body(s3_notification(record))).events
    assert event.key == "a b+c/ü.jpg"


def test_a_message_may_carry_several_records() -> None:
    notification = parse_message(
        body(
            s3_notification(
                s3_record("ObjectCreated:Put", "a.jpg"), s3_record("ObjectRemoved:Delete", "b.jpg")
            )
        )
    )
    assert [(event.kind, event.key) for event in notification.events] == [
        ("created", "a.jpg"),
        ("removed", "b.jpg"),
    ]


def test_the_test_event_is_recognised() -> None:
    notification = parse_message(body(s3_test_event()))
    assert notification.is_test
    assert notification.events == ()


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("", "not JSON"),
        ("holiday.jpg", "not JSON"),
        ("[1, 2]", "JSON list, not an object"),
        (
            body({"Message": "{}", "Type": "Notification"}),
            r"not an S3 event notification: it has keys \['Message'",
        ),
        (body({"Records": "nope"}), "not an S3 event notification"),
        (body({"Records": [{"eventSource": "aws:s3"}]}), "incomplete or malformed"),
        (body({"Records": [{**s3_record("ObjectCreated:Put", "a"), "eventSource": "aws:sqs"}]}), "aws:sqs"),
    ],
)
def test_an_unreadable_message_is_an_invalid_notification(raw: str, match: str) -> None:
    with pytest.raises(InvalidNotificationError, match=match) as raised:
        parse_message(raw)
    assert raised.value.code == "invalid_notification"
    assert not raised.value.retryable


@pytest.mark.parametrize("sequencer", ["", "0055AED6DCD9028XYZ", 1234])
def test_a_sequencer_that_is_not_hexadecimal_is_refused(sequencer: object) -> None:
    record = s3_record("ObjectCreated:Put", "a.jpg")
    record["s3"]["object"]["sequencer"] = sequencer
    with pytest.raises(InvalidNotificationError, match="not a hexadecimal string"):
        parse_message(body(s3_notification(record)))


def test_sequencers_compare_as_left_padded_hexadecimal() -> None:
    # as text "6AED..." > "0055..."; padded to equal length "00006AED..." < "0055..."
    assert (
        newest_sequencer(["6AED6DCD90281E", "0055AED6DCD90281E5", "0055aed6dcd90281e4"])
        == "0055AED6DCD90281E5"
    )


def test_unknown_sequencers_are_left_out() -> None:
    assert newest_sequencer([None, "0A", None]) == "0A"
    assert newest_sequencer([None, None]) is None
    assert newest_sequencer([]) is None


@pytest.mark.parametrize(
    ("key", "metadata", "label"),
    [
        ("cats/tabby.jpg", {}, "cats"),
        ("cats/2024/tabby.jpg", {}, "cats"),
        ("tabby.jpg", {}, None),
        ("/tabby.jpg", {}, None),
        ("cats/tabby.jpg", {"label": "dogs"}, "dogs"),  # the uploader's explicit label wins
        ("tabby.jpg", {"label": "dogs"}, "dogs"),
        ("cats/tabby.jpg", {"label": "  "}, "cats"),  # a blank label is no label
        ("cats/tabby.jpg", {"other": "x"}, "cats"),
    ],
)
def test_the_label_is_the_metadata_label_else_the_first_key_segment(
    key: str, metadata: dict[str, str], label: str | None
) -> None:
    assert label_for(key, metadata) == label


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("s3://images", ("images", "")),
        ("s3://images/", ("images", "")),
        ("s3://images/zoo/cats/", ("images", "zoo/cats/")),
    ],
)
def test_a_backfill_url_names_a_bucket_and_a_prefix(url: str, parsed: tuple[str, str]) -> None:
    assert parse_s3_url(url) == parsed


@pytest.mark.parametrize("url", ["images/zoo", "https://images.s3.amazonaws.com/zoo", "s3://", "s3:///zoo"])
def test_anything_else_is_an_invalid_request(url: str) -> None:
    with pytest.raises(InvalidRequestError, match="not an S3 URL"):
        parse_s3_url(url)


# the handler's side of a batch ----------------------------------------------------------------------


def test_a_batch_announces_the_changes_of_its_readable_messages_and_rejects_the_rest() -> None:
    created = s3_notification(s3_record("ObjectCreated:Put", "cats/a b.jpg", etag="e1", sequencer="0A"))
    tagged = s3_notification(s3_record("ObjectTagging:Put", "cats/c.jpg"))
    batch = NotificationBatch.read(
        [("m1", body(created)), ("m2", body(s3_test_event())), ("m3", "not json"), ("m4", body(tagged))]
    )

    assert batch.changes == [Change(bucket="images", key="cats/a b.jpg", etag="e1", sequencer="0A")]
    assert list(batch.rejected) == ["m3"]
    assert batch.ignored == 2  # the test event and the tagging event


def test_every_message_naming_a_key_to_retry_comes_back_and_no_other() -> None:
    def created(key: str) -> str:
        return body(s3_notification(s3_record("ObjectCreated:Put", key)))

    batch = NotificationBatch.read(
        [("m1", created("a.jpg")), ("m2", created("b.jpg")), ("m3", created("a.jpg"))]
    )
    outcomes = [
        KeyOutcome(bucket="images", key="a.jpg", kind="retry", reason="index_unavailable"),
        KeyOutcome(bucket="images", key="b.jpg", kind="failed", reason="invalid_image"),
    ]

    assert batch.to_retry(outcomes) == {"m1", "m3"}
