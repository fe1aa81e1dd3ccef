"""The backfill map's batch: which objects it names, from a listing or from an S3 Inventory."""

from __future__ import annotations

import pytest

from handlers.backfill import changes_of
from simsearch.errors import ConfigError
from simsearch.ingestion import Change


def batch(names: list[str], **batch_input: str) -> dict[str, object]:
    return {
        "Items": [{"Key": name} for name in names],
        "BatchInput": {"target": "images-m-v1", **batch_input},
    }


def test_listed_keys_are_taken_as_they_are() -> None:
    keys = ["Angelina Jolie/001.jpg", "a+b.jpg", "50%.jpg"]
    assert changes_of(batch(keys, keys="plain"), bucket="b") == [Change(bucket="b", key=k) for k in keys]
    assert changes_of(batch(keys), bucket="b") == changes_of(batch(keys, keys="plain"), bucket="b")


def test_inventory_keys_are_url_decoded_as_s3_encodes_them() -> None:
    encoded = ["Angelina+Jolie/001.jpg", "a%2Bb.jpg", "50%25.jpg", "caf%C3%A9/%E7%8C%AB.jpg"]
    assert [change.key for change in changes_of(batch(encoded, keys="url-encoded"), bucket="b")] == [
        "Angelina Jolie/001.jpg",
        "a+b.jpg",
        "50%.jpg",
        "café/猫.jpg",
    ]


def test_an_unknown_key_encoding_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"BatchInput\.keys is 'base64'"):
        changes_of(batch(["x"], keys="base64"), bucket="b")
