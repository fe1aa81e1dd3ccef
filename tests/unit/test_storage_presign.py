"""Presigned GETs: the same URLs botocore's ``generate_presigned_url`` makes, without its per-URL cost.

Signing the same request twice differs only in the time, so the URLs are compared with botocore's clock
and ours held still; no request leaves the machine (presigning is local computation).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.config import Config

from infra.config import QUERY_RESERVE_S
from simsearch import bootstrap, storage
from simsearch.storage import MAX_URL_LIFETIME_S, REUSED_URLS, GetPresigner, S3ImageStore, reuse_seconds

KEYS = [
    "photos/cat.jpg",
    "a b/ü+%~!*'();:@&=$,?#[]x.jpg",  # every character the key encoding treats specially
    "/leading//double-slash",
    "presign-probe",
    "x" * 1000,
]
NOW = datetime.datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def still_clock() -> Iterator[None]:
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", lambda *_, **__: NOW),
        mock.patch.object(storage, "_utc_now", lambda: NOW),
    ):
        yield


STS_TOKEN = "IQoJb3JpZ2luX2VjEHwaCXVzLWVhc3QtMSJHMEUCIQ+/x=="  # the characters a session token carries


def s3(
    region: str = "us-east-1",
    *,
    endpoint: str | None = None,
    config: Config = bootstrap.QUERY_S3,
    token: str | None = "token",
) -> Any:
    return boto3.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        config=config,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token=token,
    )


@pytest.mark.usefixtures("still_clock")
@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("us-east-1", None),
        ("eu-west-1", None),
        ("us-east-1", "http://127.0.0.1:5000"),
        ("us-east-1", "https://s3.example.test:443"),  # the signed host leaves a default port out
        ("us-east-1", "http://[::1]:5000"),
    ],
    ids=["us-east-1", "eu-west-1", "path-style-endpoint", "default-port-endpoint", "ipv6-endpoint"],
)
@pytest.mark.parametrize("token", ["token", STS_TOKEN, None], ids=["token", "sts-token", "no-token"])
def test_presigned_urls_are_the_ones_the_client_makes(
    region: str, endpoint: str | None, token: str | None
) -> None:
    client = s3(region, endpoint=endpoint, token=token)
    store = S3ImageStore(client)
    with mock.patch.object(client, "generate_presigned_url", wraps=client.generate_presigned_url) as presign:
        ours = {
            (bucket, key, ttl): store.presigned_get(bucket, key, ttl_seconds=ttl)
            for bucket in ("images", "other.bucket-2")
            for key in KEYS
            for ttl in (60, 900)
        }
    assert presign.call_count == 2  # one probe per bucket: every URL was signed here, none by the client
    for (bucket, key, ttl), url in ours.items():
        made = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl + reuse_seconds(ttl)
        )
        assert url == made


@pytest.mark.usefixtures("still_clock")
def test_a_bucket_whose_probe_the_client_signs_otherwise_keeps_the_clients_urls() -> None:
    """Should a botocore release add a parameter or sign differently, its URLs win over ours."""
    client = s3()
    signs = client.generate_presigned_url

    def with_extra_parameter(*args: Any, **kwargs: Any) -> str:
        return f"{signs(*args, **kwargs)}&x-id=GetObject"

    store = S3ImageStore(client)
    with mock.patch.object(client, "generate_presigned_url", side_effect=with_extra_parameter) as presign:
        url = store.presigned_get("images", "photos/cat.jpg", ttl_seconds=60)
    assert url.endswith("&x-id=GetObject")
    assert presign.call_count == 2  # the probe, then the client's URL for the key


@pytest.mark.usefixtures("still_clock")
def test_a_client_that_does_not_sign_with_sigv4_presigns_itself() -> None:
    client = s3(config=Config(signature_version="s3"))
    lifetime = 60 + reuse_seconds(60)
    made = client.generate_presigned_url(
        "get_object", Params={"Bucket": "images", "Key": "a"}, ExpiresIn=lifetime
    )
    assert S3ImageStore(client).presigned_get("images", "a", ttl_seconds=60) == made


def test_each_url_is_signed_with_the_credentials_of_the_moment() -> None:
    """Role credentials expire and are refreshed: a URL must never carry the ones of the first call."""
    client = s3()
    store = S3ImageStore(client)
    first = store.presigned_get("images", "a", ttl_seconds=60)
    client._request_signer._credentials.token = "refreshed"  # what a refresh does to the shared object
    assert "X-Amz-Security-Token=token" in first
    assert "X-Amz-Security-Token=refreshed" in store.presigned_get("images", "a", ttl_seconds=60)


class Clock:
    """Seconds since ``NOW``, for the presigner's reuse and for botocore's signing time alike."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds

    def datetime(self, *_: Any, **__: Any) -> datetime.datetime:
        return NOW + datetime.timedelta(seconds=self.seconds)


@pytest.fixture
def clock() -> Iterator[Clock]:
    clock = Clock()
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", clock.datetime),
        mock.patch.object(storage, "_utc_now", clock.datetime),
    ):
        yield clock


def lives_for(url: str, *, at: datetime.datetime) -> float:
    """Seconds ``url`` stays valid after ``at``, by its own ``X-Amz-Date`` and ``X-Amz-Expires``."""
    params = dict(parse_qsl(urlsplit(url).query))
    signed = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    return (signed - at).total_seconds() + int(params["X-Amz-Expires"])


def test_a_url_is_handed_out_again_only_while_it_still_has_its_ttl_to_live(clock: Clock) -> None:
    presigner, ttl = GetPresigner(s3(), clock=clock), 900
    first = presigner.url("images", "a.jpg", ttl_seconds=ttl)
    handed_out = []
    for clock.seconds in range(0, 2 * ttl, 7):
        url = presigner.url("images", "a.jpg", ttl_seconds=ttl)
        assert lives_for(url, at=clock.datetime()) >= ttl
        handed_out.append(url)
    assert handed_out.count(first) == len(range(0, reuse_seconds(ttl), 7))  # reused for a quarter of the ttl
    assert len(set(handed_out)) > 1
    assert presigner.url("images", "b.jpg", ttl_seconds=ttl) != presigner.url(
        "images", "a.jpg", ttl_seconds=ttl
    )


def test_no_url_is_signed_for_longer_than_sigv4_allows(clock: Clock) -> None:
    url = GetPresigner(s3(), clock=clock).url("images", "a.jpg", ttl_seconds=MAX_URL_LIFETIME_S)
    assert lives_for(url, at=clock.datetime()) == MAX_URL_LIFETIME_S


def test_only_the_most_recent_urls_are_kept_for_reuse(clock: Clock) -> None:
    presigner = GetPresigner(s3(), clock=clock)
    oldest = presigner.url("images", "0.jpg", ttl_seconds=900)
    for n in range(1, REUSED_URLS + 1):
        presigner.url("images", f"{n}.jpg", ttl_seconds=900)
    clock.seconds = 1  # well inside the reuse window: only a forgotten URL is signed again
    assert presigner.url("images", f"{REUSED_URLS}.jpg", ttl_seconds=900) != oldest
    assert presigner.url("images", "0.jpg", ttl_seconds=900) != oldest


def test_the_query_functions_s3_reads_end_inside_its_reserve() -> None:
    """A search by key reads S3 (HEAD, GET) inside the share of the timeout the index does not take."""
    config = bootstrap.QUERY_S3
    attempt = config.connect_timeout + config.read_timeout
    worst = bootstrap.QUERY_S3_REQUESTS * config.retries["total_max_attempts"] * attempt
    assert worst < QUERY_RESERVE_S
    assert config.signature_version == "s3v4"


def test_urls_are_signed_at_the_utc_time_the_client_signs_at_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AWS refuses a URL dated in the future; a local time instead of UTC would be hours off."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30
    time.tzset()
    try:
        client = s3()
        ours = S3ImageStore(client).presigned_get("images", "a.jpg", ttl_seconds=60)
        made = client.generate_presigned_url("get_object", Params={"Bucket": "images", "Key": "a.jpg"})
    finally:
        monkeypatch.undo()
        time.tzset()
    signed = [
        datetime.datetime.strptime(dict(parse_qsl(urlsplit(url).query))["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        for url in (ours, made)
    ]
    assert abs(signed[1] - signed[0]) <= datetime.timedelta(seconds=5)
