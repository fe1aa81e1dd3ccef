"""Models by index: the deployment copies each model it ships to S3, and a function loads the one it lacks.

S3 is moto's (in process). The "model" is bytes with a manifest naming their sha256; loading it is the
test's ``load``, which reads the manifest the store hands over, as ``OnnxEmbedder.load`` would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simsearch.errors import ConfigError, StorageUnavailableError
from simsearch.index.port import IndexInfo
from simsearch.manifest import MANIFEST_FILE, ModelManifest
from simsearch.models import ModelStore, publish, s3_model_uri
from tests.fakes import StubEmbedder
from tests.image_factories import manifest_for
from tests.moto_s3 import moto_bucket

BUCKET = "models"
WEIGHTS = b"pretend these are the weights of model old-c1"


@pytest.fixture
def s3() -> Iterator[Any]:
    with moto_bucket(BUCKET) as client:
        yield client


def model_dir(path: Path, model_id: str = "old-c1", weights: bytes = WEIGHTS) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.onnx").write_bytes(weights)
    manifest = manifest_for(
        resize=36, input_size=32, model_id=model_id, onnx_sha256=hashlib.sha256(weights).hexdigest()
    )
    manifest.save(path)
    return path


class Loads:
    """``ModelStore``'s ``load``: records each directory, gives a stub of the manifest's model."""

    def __init__(self) -> None:
        self.dirs: list[Path] = []

    def __call__(self, path: Path) -> StubEmbedder:
        self.dirs.append(path)
        assert (path / "model.onnx").read_bytes() == WEIGHTS
        return StubEmbedder(model_id=ModelManifest.load(path).model_id)


def info(model_id: str = "old-c1", uri: str = s3_model_uri(BUCKET, "old-c1")) -> IndexInfo:
    return IndexInfo(name=f"images-{model_id}-v1", model_id=model_id, model_uri=uri, dim=13)


def store(tmp_path: Path, s3: Any, loads: Loads) -> ModelStore:
    return ModelStore(
        carried=StubEmbedder(model_id="new-c1"), load=loads, cache_dir=tmp_path / "cache", s3=lambda: s3
    )


def test_a_published_model_is_fetched_verified_and_loaded_once(tmp_path: Path, s3: Any) -> None:
    assert publish(model_dir(tmp_path / "old"), s3_model_uri(BUCKET, "old-c1"), s3=s3)
    loads = Loads()
    models = store(tmp_path, s3, loads)
    assert models.embedder(info()).model_id == "old-c1"
    assert models.embedder(info()).model_id == "old-c1"
    assert loads.dirs == [tmp_path / "cache" / "old-c1"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(keys) == [f"models/old-c1/{MANIFEST_FILE}", "models/old-c1/model.onnx"]


def test_the_carried_model_is_never_fetched(tmp_path: Path, s3: Any) -> None:
    loads = Loads()
    assert store(tmp_path, s3, loads).embedder(info("new-c1", uri="")).model_id == "new-c1"
    assert loads.dirs == []


def test_publishing_the_same_model_again_copies_nothing(tmp_path: Path, s3: Any) -> None:
    source = model_dir(tmp_path / "old")
    assert publish(source, s3_model_uri(BUCKET, "old-c1"), s3=s3)
    assert not publish(source, s3_model_uri(BUCKET, "old-c1"), s3=s3)


def test_a_model_whose_bytes_do_not_match_its_manifest_is_refused_and_not_kept(
    tmp_path: Path, s3: Any
) -> None:
    publish(model_dir(tmp_path / "old"), s3_model_uri(BUCKET, "old-c1"), s3=s3)
    s3.put_object(Bucket=BUCKET, Key="models/old-c1/model.onnx", Body=b"tampered")
    with pytest.raises(ConfigError, match="does not have the sha256 its manifest records"):
        store(tmp_path, s3, Loads()).embedder(info())
    assert not (tmp_path / "cache" / "old-c1" / "model.onnx").exists()


def test_a_model_that_is_not_there_is_a_storage_error_naming_it(tmp_path: Path, s3: Any) -> None:
    with pytest.raises(StorageUnavailableError, match="could not fetch model old-c1 from s3://models/"):
        store(tmp_path, s3, Loads()).embedder(info())


def test_a_directory_holding_another_model_is_refused(tmp_path: Path, s3: Any) -> None:
    publish(model_dir(tmp_path / "other", model_id="other-c1"), s3_model_uri(BUCKET, "old-c1"), s3=s3)
    with pytest.raises(ConfigError, match="holds model other-c1, not old-c1"):
        store(tmp_path, s3, Loads()).embedder(info())


def test_a_local_directory_is_loaded_in_place(tmp_path: Path, s3: Any) -> None:
    source = model_dir(tmp_path / "old")
    loads = Loads()
    store(tmp_path, s3, loads).embedder(info(uri=str(source)))
    assert loads.dirs == [source]


def test_only_s3_locations_can_be_published_to(tmp_path: Path, s3: Any) -> None:
    with pytest.raises(ConfigError, match="is not an s3://bucket/prefix/ location"):
        publish(model_dir(tmp_path / "old"), str(tmp_path / "elsewhere"), s3=s3)
