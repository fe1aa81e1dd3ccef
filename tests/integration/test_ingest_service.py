"""The ingestion service on its own: races with other writers, one inference per batch, model faults.

The service is built from real parts (moto S3 through ``S3ImageStore``, the embedded index, ONNX
Runtime). A race is staged by a store that lets "someone else" change the object at the worst moment,
through S3 itself; the embedder is only wrapped to count its calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, checker, helper, save
from PIL import Image

from handlers.notifications import NotificationBatch
from simsearch.embedder import Embeddings, OnnxEmbedder
from simsearch.errors import NotFoundError
from simsearch.index import connect_failure_log, connect_index
from simsearch.ingestion import CHANGED_DURING_INGESTION, Change, IngestionService
from simsearch.preprocess import ImageLimits
from simsearch.settings import Settings
from simsearch.storage import S3ImageStore, StoredObject
from tests.image_factories import encode, manifest_for
from tests.integration.ingest_world import BUCKET, IndexView, Uploads, photo

KEY = "cats/tabby.jpg"
LIMITS = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=50_000_000)


class RacingStore(S3ImageStore):
    """The real store, and another writer who acts once: after our read, or after a HEAD finds nothing."""

    def __init__(
        self,
        client: object,
        *,
        after_read: Callable[[], object] | None = None,
        after_missing: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(client)
        self._pending = {"read": after_read, "missing": after_missing}

    def read(self, obj: StoredObject) -> bytes:
        data = super().read(obj)
        self._act("read")
        return data

    def head(self, bucket: str, key: str) -> StoredObject:
        try:
            return super().head(bucket, key)
        except NotFoundError:
            self._act("missing")
            raise

    def _act(self, moment: str) -> None:
        action = self._pending.pop(moment, None)
        if action is not None:
            action()


class CountingEmbedder:
    """The real embedder, recording how many images each call embedded."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self._inner = inner
        self.calls: list[int] = []

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    def embed(self, images: Sequence[Image.Image]) -> Embeddings:
        self.calls.append(len(images))
        return self._inner.embed(images)


@pytest.fixture(scope="module")
def mobilenet(model_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder.load(model_dir, threads=2)


@pytest.fixture
def local_settings(tmp_path: Path, model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, images_bucket=BUCKET, embedded_index_path=tmp_path / "index.sqlite")


def build(
    settings: Settings, *, images: S3ImageStore, embedder: OnnxEmbedder | CountingEmbedder
) -> tuple[IngestionService, IndexView]:
    index = connect_index(settings, model_id=embedder.model_id, dim=embedder.dim)
    failures = connect_failure_log(settings)
    index.ensure()
    service = IngestionService(
        images=images,
        embedder=embedder,
        index=index,
        failures=failures,
        limits=LIMITS,
        query_upload_prefix=settings.query_upload_prefix,
    )
    return service, IndexView(index=index, failure_log=failures, refresh=lambda: None)


def test_an_upload_during_indexing_is_retried_and_then_indexed(
    uploads: Uploads, local_settings: Settings, mobilenet: OnnxEmbedder
) -> None:
    uploads.put(KEY, photo(1))
    newer: list[str] = []
    store = RacingStore(uploads.s3, after_read=lambda: newer.append(uploads.put(KEY, photo(2))))
    service, index_view = build(local_settings, images=store, embedder=mobilenet)

    (first,) = service.sync([Change(bucket=BUCKET, key=KEY)])
    assert (first.kind, first.reason) == ("retry", CHANGED_DURING_INGESTION)

    (second,) = service.sync([Change(bucket=BUCKET, key=KEY)])  # SQS redelivers the message
    assert second.kind == "indexed"
    document = index_view.document(KEY)
    assert document is not None and document.metadata.etag == newer[0]


def test_a_delete_during_indexing_is_retried_and_then_removed(
    uploads: Uploads, local_settings: Settings, mobilenet: OnnxEmbedder
) -> None:
    uploads.put(KEY, photo(1))
    store = RacingStore(uploads.s3, after_read=lambda: uploads.delete(KEY))
    service, index_view = build(local_settings, images=store, embedder=mobilenet)

    (first,) = service.sync([Change(bucket=BUCKET, key=KEY)])
    assert (first.kind, first.reason) == ("retry", CHANGED_DURING_INGESTION)

    (second,) = service.sync([Change(bucket=BUCKET, key=KEY)])
    assert second.kind == "removed"
    assert index_view.document(KEY) is None


def test_an_upload_during_a_removal_is_retried_and_then_indexed(
    uploads: Uploads, local_settings: Settings, mobilenet: OnnxEmbedder
) -> None:
    store = RacingStore(uploads.s3, after_missing=lambda: uploads.put(KEY, photo(3)))
    service, index_view = build(local_settings, images=store, embedder=mobilenet)

    (first,) = service.sync([Change(bucket=BUCKET, key=KEY)])
    assert (first.kind, first.reason) == ("retry", CHANGED_DURING_INGESTION)

    (second,) = service.sync([Change(bucket=BUCKET, key=KEY)])
    assert second.kind == "indexed"
    assert index_view.document(KEY) is not None


def test_a_batch_of_ten_images_is_embedded_in_one_inference_call(
    uploads: Uploads, local_settings: Settings, mobilenet: OnnxEmbedder
) -> None:
    uploads.messages()
    for n in range(10):
        uploads.put(f"cats/{n}.jpg", photo(n))
    counting = CountingEmbedder(mobilenet)
    service, index_view = build(local_settings, images=S3ImageStore(uploads.s3), embedder=counting)
    batch = NotificationBatch.read((m["MessageId"], m["Body"]) for m in uploads.messages())

    outcomes = service.sync(batch.changes)

    assert [outcome.kind for outcome in outcomes] == ["indexed"] * 10
    assert batch.to_retry(outcomes) == frozenset()
    assert counting.calls == [10]
    assert index_view.count() == 10


# A model fault on one image of a batch: a real ONNX model whose ReLU zeroes dark images


@pytest.fixture(scope="module")
def relu_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    """``unit(mean(relu(x)))`` per channel: an image darker than the ImageNet mean embeds to zero."""
    model_dir = tmp_path_factory.mktemp("relu")
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["input"], ["positive"]),
            helper.make_node("GlobalAveragePool", ["positive"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1),
        ],
        "relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    checker.check_model(model)
    save(model, model_dir / "model.onnx")
    manifest_for(resize=36, input_size=32, embedding_dim=3, model_id="relu-test").save(model_dir)
    return OnnxEmbedder.load(model_dir, threads=1)


@pytest.fixture
def bright_and_dark(uploads: Uploads) -> Uploads:
    uploads.put("shades/bright.png", encode(Image.new("RGB", (40, 40), (250, 250, 250)), "PNG"))
    uploads.put("shades/dark.png", encode(Image.new("RGB", (40, 40), (5, 5, 5)), "PNG"))
    return uploads


def test_an_image_the_model_cannot_embed_fails_alone(
    bright_and_dark: Uploads, tmp_path: Path, relu_model: OnnxEmbedder
) -> None:
    settings = Settings(model_dir=tmp_path, images_bucket=BUCKET, embedded_index_path=tmp_path / "i.sqlite")
    counting = CountingEmbedder(relu_model)
    service, index_view = build(settings, images=S3ImageStore(bright_and_dark.s3), embedder=counting)

    outcomes = service.sync([Change(bucket=BUCKET, key=k) for k in ("shades/bright.png", "shades/dark.png")])

    assert {(o.key, o.kind, o.reason) for o in outcomes} == {
        ("shades/bright.png", "indexed", ""),
        ("shades/dark.png", "failed", "invalid_vector"),
    }
    assert counting.calls == [2, 1, 1]  # the batch, then each image to find the bad one
    assert index_view.failure_of("shades/dark.png").reason_code == "invalid_vector"
    bright = index_view.document("shades/bright.png")
    assert bright is not None
    np.testing.assert_allclose(np.linalg.norm(bright.vector), 1.0, rtol=1e-6)
