"""Settings: infra writes the environment with to_env(), runtime reads it back with from_env()."""

from pathlib import Path

import pytest

from simsearch.errors import ConfigError
from simsearch.settings import Settings


def test_environment_round_trip_gives_equal_settings() -> None:
    settings = Settings(
        model_dir=Path("/opt/model"),
        images_bucket="images",
        opensearch_url="https://search.example:443",
        engine="lucene",
        hnsw_ef_search=256,
    )
    assert Settings.from_env(settings.to_env()) == settings


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"SIMSEARCH_ENGINE": "nmslib", "SIMSEARCH_HNSW_M": "sixteen"})
    message = str(raised.value)
    for expected in (
        "SIMSEARCH_MODEL_DIR is missing",
        "SIMSEARCH_IMAGES_BUCKET is missing",
        "nmslib",
        "sixteen",
    ):
        assert expected in message


def test_defaults_apply_when_only_required_variables_are_set() -> None:
    settings = Settings.from_env({"SIMSEARCH_MODEL_DIR": "m", "SIMSEARCH_IMAGES_BUCKET": "b"})
    assert (settings.engine, settings.space_type, settings.opensearch_url) == ("faiss", "innerproduct", "")
