"""The presigned GET signer against AWS's own worked example.

The expected URL is the example of the Amazon S3 API Reference, "Authenticating Requests: Using Query
Parameters (AWS Signature Version 4)": the object ``test.txt`` of ``examplebucket`` in us-east-1, signed
with the documentation's example key at 2013-05-24T00:00:00Z for 86,400 seconds. Byte-for-byte equality
with botocore's URLs over many keys and configurations is ``tests/unit/test_storage_presign.py``.
"""

from __future__ import annotations

from datetime import datetime

from botocore.credentials import ReadOnlyCredentials

from simsearch.sigv4_query import presigned_get

AWS_EXAMPLE = (
    "https://examplebucket.s3.amazonaws.com/test.txt"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z"
    "&X-Amz-Expires=86400"
    "&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)


def test_the_url_is_the_one_in_awss_worked_example() -> None:
    credentials = ReadOnlyCredentials(
        "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None
    )
    url = presigned_get(
        base="https://examplebucket.s3.amazonaws.com/test.txt",
        path="/test.txt",
        host="examplebucket.s3.amazonaws.com",
        region="us-east-1",
        credentials=credentials,
        expires=86400,
        now=datetime(2013, 5, 24),
    )
    assert url == AWS_EXAMPLE
