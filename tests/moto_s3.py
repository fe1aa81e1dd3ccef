"""S3 on moto in this process, for tests of our S3 code that need no queue or notifications."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto import mock_aws


@contextmanager
def moto_bucket(name: str) -> Iterator[Any]:
    """A boto3 S3 client on moto with the bucket ``name`` created; moto forgets it all afterwards."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=name)
        yield client
