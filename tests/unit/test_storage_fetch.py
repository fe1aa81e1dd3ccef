"""``S3ImageStore.fetch``: a HEAD and a read in one GET, on moto in this process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simsearch.errors import NotFoundError
from simsearch.storage import S3ImageStore
from tests.moto_s3 import moto_bucket

BUCKET = "images"


@pytest.fixture
def s3() -> Iterator[Any]:
    with moto_bucket(BUCKET) as client:
        yield client


def test_fetch_gives_what_head_and_read_give(s3: Any) -> None:
    s3.put_object(
        Bucket=BUCKET, Key="cats/a.jpg", Body=b"bytes", ContentType="image/jpeg", Metadata={"label": "cat"}
    )
    store = S3ImageStore(s3)

    obj, data = store.fetch(BUCKET, "cats/a.jpg", max_bytes=100)

    assert obj == store.head(BUCKET, "cats/a.jpg")
    assert data == store.read(obj) == b"bytes"


def test_an_object_over_the_limit_is_described_but_not_read(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="cats/large.jpg", Body=b"x" * 1000)

    obj, data = S3ImageStore(s3).fetch(BUCKET, "cats/large.jpg", max_bytes=999)

    assert (obj.size, data) == (1000, None)


def test_a_missing_object_is_not_found(s3: Any) -> None:
    with pytest.raises(NotFoundError):
        S3ImageStore(s3).fetch(BUCKET, "cats/gone.jpg", max_bytes=100)
