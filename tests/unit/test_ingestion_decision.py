"""What ingestion decides for one key, from what a look found: the pure part, no I/O at all."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simsearch.errors import ImageTooLargeError
from simsearch.index.port import Document, ImageMetadata
from simsearch.ingestion.changes import Change, Target, targets_of
from simsearch.ingestion.decision import Gone, Index, Present, Refuse, Remove, Rules, Unchanged, decide
from simsearch.preprocess import ImageLimits
from simsearch.storage import StoredObject

RULES = Rules(
    model_id="m-1", limits=ImageLimits(max_bytes=1000, max_pixels=10_000), query_upload_prefix="_q/"
)
TARGET = Target("images", "cats/a.jpg", ())
OBJ = StoredObject(bucket="images", key="cats/a.jpg", etag="e1", size=500)


def indexed(**metadata: object) -> Document:
    fields = {"bucket": "images", "key": "cats/a.jpg", "etag": "e1", "model_id": "m-1", "label": "cats"}
    return Document(
        image_id=TARGET.image_id,
        vector=np.ones(4, dtype=np.float32) / 2,
        metadata=ImageMetadata(**(fields | metadata)),  # type: ignore[arg-type]
    )


def test_a_gone_object_is_removed() -> None:
    assert decide(Gone(TARGET), RULES) == Remove(TARGET)


def test_an_object_the_index_holds_as_it_is_stays_unchanged() -> None:
    found = Present(TARGET, OBJ, indexed())
    assert decide(found, RULES) == Unchanged(found)


@pytest.mark.parametrize(
    "document",
    [None, indexed(etag="e0"), indexed(model_id="m-0"), indexed(label="dogs")],
    ids=["not indexed", "other content", "other model", "other label"],
)
def test_anything_else_about_an_object_is_indexed(document: Document | None) -> None:
    found = Present(TARGET, OBJ, document)
    assert decide(found, RULES) == Index(found)


def test_an_object_over_the_byte_limit_is_refused_before_it_is_read() -> None:
    found = Present(TARGET, replace(OBJ, size=1001), None)
    decision = decide(found, RULES)
    assert isinstance(decision, Refuse) and isinstance(decision.error, ImageTooLargeError)
    assert str(decision.error) == "the object is 1001 bytes; the limit is 1000 bytes"


def test_query_uploads_are_ignored_and_nothing_else_is() -> None:
    assert RULES.ignores("_q/upload.jpg")
    assert not RULES.ignores("cats/_q/upload.jpg")
    assert not replace(RULES, query_upload_prefix="").ignores("_q/upload.jpg")


def test_a_key_named_twice_is_one_target_with_both_changes_in_order() -> None:
    changes = [
        Change(bucket="b", key="k", etag="1"),
        Change(bucket="b", key="j"),
        Change(bucket="b", key="k"),
    ]
    assert [(t.key, len(t.announced)) for t in targets_of(changes)] == [("k", 2), ("j", 1)]
