"""How ``client_for`` authenticates: the headers real requests carry, captured by tests/faultproxy.py.

No node is needed: the proxy answers every request itself (502), and the tests read what arrived.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from simsearch.errors import ConfigError, IndexUnavailableError
from simsearch.index.opensearch import IndexConfig, OpenSearchIndex, client_for
from simsearch.settings import Settings
from tests.faultproxy import FaultProxy
from tests.index_factories import unit_vectors


def settings(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"model_dir": Path("model"), "images_bucket": "images", "opensearch_url": url}
    return Settings(**(values | overrides))  # type: ignore[arg-type]


def headers_of_a_search(url: str, **overrides: object) -> dict[str, str]:
    """Send one search through ``client_for`` to a proxy that has no node behind it."""
    with FaultProxy(None) as proxy:
        client = client_for(settings(url.format(proxy=proxy.url.removeprefix("http://")), **overrides))
        index = OpenSearchIndex(client, alias="images-m", config=IndexConfig(dim=4))
        with pytest.raises(IndexUnavailableError):
            index.search(unit_vectors(1, 4)[0], k=1)
        exchanges = proxy.seen  # the transport retries the proxy's 502
    assert {(e.method, e.path) for e in exchanges} == {("POST", "/images-m/_search")}, "searches are POSTs"
    return {name.lower(): value for name, value in exchanges[0].headers.items()}


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-example")


@pytest.mark.usefixtures("aws_credentials")
@pytest.mark.parametrize("service", ["es", "aoss"])
def test_sigv4_signs_each_request_for_the_service_and_region(service: str) -> None:
    headers = headers_of_a_search(
        "http://{proxy}", opensearch_auth="sigv4", opensearch_service=service, aws_region="eu-west-1"
    )
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert f"/eu-west-1/{service}/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "session-token-example"
    assert len(headers["x-amz-content-sha256"]) == 64  # the body is part of the signature


def test_sigv4_without_any_credentials_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        client_for(settings("https://search.example.com", opensearch_auth="sigv4"))


def test_basic_auth_takes_user_and_password_from_the_url() -> None:
    headers = headers_of_a_search("http://admin:s3cret@{proxy}", opensearch_auth="basic")
    assert headers["authorization"] == "Basic " + base64.b64encode(b"admin:s3cret").decode()


def test_basic_auth_without_credentials_in_the_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="user:password"):
        client_for(settings("http://localhost:9200", opensearch_auth="basic"))


def test_no_auth_sends_no_authorization_header() -> None:
    assert "authorization" not in headers_of_a_search("http://{proxy}", opensearch_auth="none")


def test_an_empty_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="embedded"):
        client_for(settings("", opensearch_auth="none"))
