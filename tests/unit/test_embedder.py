"""The ONNX embedder, run by the real ONNX Runtime on tiny models built here with ``onnx.helper``.

The main test model is a 1x1 convolution, global average pooling and L2 normalisation. Its embedding has a
closed form, ``unit(W @ mean_rgb + b)``, so the tests can check what the session computed, not only shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from model.images import photograph
from simsearch.embedder import Embedder, OnnxEmbedder, ort_threads
from simsearch.errors import ConfigError, InvalidImageError, InvalidRequestError, InvalidVectorError
from simsearch.manifest import MANIFEST_FILE, ModelManifest
from simsearch.preprocess import ImageLimits, decode_image, to_batch
from tests.image_factories import encode, manifest_for

SIZE, DIM = 32, 5
LIMITS = ImageLimits(max_bytes=1_000_000, max_pixels=4_000_000)
RNG = np.random.default_rng(2024)
WEIGHTS = RNG.standard_normal((DIM, 3)).astype(np.float32)
BIAS = RNG.standard_normal(DIM).astype(np.float32)

Array = npt.NDArray[np.float32]


def write_model(
    model_dir: Path,
    *,
    weights: Array = WEIGHTS,
    bias: Array = BIAS,
    normalise: bool = True,
    model_size: int = SIZE,
    manifest: ModelManifest | None = None,
) -> Path:
    """Save ``unit?(conv1x1(x).mean(hw))`` as ``model.onnx`` with its manifest; return the directory."""
    dim = weights.shape[0]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"]),
        helper.make_node("GlobalAveragePool", ["conv"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["raw" if normalise else "embedding"], axis=1),
    ]
    if normalise:
        nodes.append(helper.make_node("LpNormalization", ["raw"], ["embedding"], axis=1, p=2))
    initializers = [
        numpy_helper.from_array(weights.reshape(dim, 3, 1, 1), "w"),
        numpy_helper.from_array(bias, "b"),
    ]
    return save(model_dir, nodes, initializers, dim=dim, model_size=model_size, manifest=manifest)


def save(
    model_dir: Path,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    *,
    dim: int,
    model_size: int = SIZE,
    manifest: ModelManifest | None = None,
) -> Path:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, model_size, model_size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, model_dir / "model.onnx")
    (manifest or manifest_for(resize=36, input_size=model_size, embedding_dim=dim)).save(model_dir)
    return model_dir


def expected_embeddings(batch: Array, *, weights: Array = WEIGHTS, bias: Array = BIAS) -> Array:
    raw = batch.mean(axis=(2, 3), dtype=np.float64) @ weights.T + bias
    unit: Array = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
    return unit


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder.load(model_dir, threads=2)


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """Two real photos and two synthetic images, so a mix-up of rows would show."""
    return [
        decode_image(photograph("china.jpg"), limits=LIMITS).rgb,
        decode_image(photograph("flower.jpg"), limits=LIMITS).rgb,
        Image.new("RGB", (50, 70), (200, 30, 90)),
        Image.linear_gradient("L").convert("RGB"),
    ]


def random_batch(n: int) -> Array:
    return np.random.default_rng(n).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


# What the session computes


def test_the_embedder_is_described_by_its_manifest(embedder: OnnxEmbedder) -> None:
    as_protocol: Embedder = embedder
    assert (as_protocol.dim, as_protocol.model_id) == (DIM, f"test-r36-c{SIZE}")


@pytest.mark.parametrize("n", [1, 3, 32])
def test_a_batch_gives_one_unit_row_per_image_in_order(embedder: OnnxEmbedder, n: int) -> None:
    batch = random_batch(n)
    embeddings = embedder.embed_tensors(batch)
    assert embeddings.shape == (n, DIM)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(embeddings, expected_embeddings(batch), atol=1e-5)


def test_an_image_embeds_the_same_alone_or_in_a_batch(embedder: OnnxEmbedder) -> None:
    batch = random_batch(8)
    together = embedder.embed_tensors(batch)
    alone = np.concatenate([embedder.embed_tensors(batch[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_images_are_preprocessed_with_the_manifest(embedder: OnnxEmbedder, photos: list[Image.Image]) -> None:
    embeddings = embedder.embed(photos)
    np.testing.assert_array_equal(embeddings, embedder.embed_tensors(to_batch(photos, embedder.manifest)))


def test_parallel_preprocessing_gives_the_sequential_result(
    model_dir: Path, embedder: OnnxEmbedder, photos: list[Image.Image]
) -> None:
    sequential = OnnxEmbedder.load(model_dir, threads=1)
    np.testing.assert_array_equal(embedder.embed(photos), sequential.embed(photos))


def test_encoded_images_embed_like_their_decoded_pixels(embedder: OnnxEmbedder) -> None:
    encoded = [photograph("china.jpg"), encode(Image.new("RGB", (40, 90), (0, 128, 255)), "PNG")]
    decoded = [decode_image(data, limits=LIMITS).rgb for data in encoded]
    np.testing.assert_array_equal(embedder.embed_images(encoded, limits=LIMITS), embedder.embed(decoded))


def test_one_bad_image_in_encoded_images_raises_its_typed_error(embedder: OnnxEmbedder) -> None:
    with pytest.raises(InvalidImageError, match="empty"):
        embedder.embed_images([photograph("china.jpg"), b""], limits=LIMITS)


def test_an_empty_batch_gives_no_rows(embedder: OnnxEmbedder) -> None:
    assert embedder.embed([]).shape == (0, DIM)
    assert embedder.embed_images([], limits=LIMITS).shape == (0, DIM)


def test_unnormalised_model_outputs_are_normalised(tmp_path: Path) -> None:
    embedder = OnnxEmbedder.load(write_model(tmp_path, normalise=False), threads=1)
    batch = random_batch(4)
    np.testing.assert_allclose(embedder.embed_tensors(batch), expected_embeddings(batch), atol=1e-5)


def test_a_zero_embedding_is_an_invalid_vector(tmp_path: Path) -> None:
    zeros = np.zeros((DIM, 3), dtype=np.float32)
    embedder = OnnxEmbedder.load(
        write_model(tmp_path, weights=zeros, bias=np.zeros(DIM, np.float32)), threads=1
    )
    with pytest.raises(InvalidVectorError, match="image 0 of the batch"):
        embedder.embed_tensors(random_batch(2))


# Wrong input is a typed error, before ONNX Runtime sees it


@pytest.mark.parametrize(
    "batch",
    [
        np.zeros((2, 3, SIZE, SIZE), dtype=np.float64),
        np.zeros((2, 3, SIZE + 1, SIZE + 1), dtype=np.float32),
        np.zeros((2, 1, SIZE, SIZE), dtype=np.float32),
        np.zeros((3, SIZE, SIZE), dtype=np.float32),
        [[0.0]],
    ],
    ids=["float64", "wrong-size", "one-channel", "no-batch-axis", "a-list"],
)
def test_a_malformed_batch_is_an_invalid_request(embedder: OnnxEmbedder, batch: Array) -> None:
    with pytest.raises(InvalidRequestError, match=rf"takes float32 of shape \(n, 3, {SIZE}, {SIZE}\)"):
        embedder.embed_tensors(batch)


# Loading refuses what would fail later


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        (manifest_for(resize=40, input_size=40, embedding_dim=DIM), "input 'input' has shape"),
        (manifest_for(resize=36, input_size=SIZE, embedding_dim=DIM + 1), "output 'embedding' has shape"),
        (
            manifest_for(resize=36, input_size=SIZE, embedding_dim=DIM, output_name="features"),
            "'features' is not",
        ),
    ],
    ids=["input-size", "embedding-dim", "output-name"],
)
def test_a_model_that_disagrees_with_its_manifest_is_refused(
    tmp_path: Path, manifest: ModelManifest, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        OnnxEmbedder.load(write_model(tmp_path, manifest=manifest), threads=1)


def test_a_model_that_loads_but_cannot_run_is_refused_by_the_warm_up(tmp_path: Path) -> None:
    """Gathering channel 7 of 3 passes every load-time check and fails only on a real run."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gather", ["flat", "channels"], ["embedding"], axis=1),
    ]
    channels = numpy_helper.from_array(np.array([0, 1, 7], dtype=np.int64), "channels")
    with pytest.raises(ConfigError, match="loads but cannot run"):
        OnnxEmbedder.load(save(tmp_path, nodes, [channels], dim=3), threads=1)


def test_missing_and_corrupt_model_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no model manifest"):
        OnnxEmbedder.load(tmp_path, threads=1)
    manifest_for(resize=36, input_size=SIZE).save(tmp_path)
    with pytest.raises(ConfigError, match="no model file"):
        OnnxEmbedder.load(tmp_path, threads=1)
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ConfigError, match="cannot load"):
        OnnxEmbedder.load(tmp_path, threads=1)
    assert (tmp_path / MANIFEST_FILE).is_file()


def test_fewer_than_one_thread_is_a_config_error(model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="threads is 0"):
        OnnxEmbedder.load(model_dir, threads=0)


# Thread count


@pytest.mark.parametrize(
    ("memory_mb", "threads"),
    [(128, 1), (1024, 1), (1769, 1), (2048, 1), (3008, 2), (5307, 3), (7076, 4), (8845, 5), (10240, 6)],
)
def test_lambda_threads_follow_the_vcpus_its_memory_buys(memory_mb: int, threads: int) -> None:
    assert ort_threads(0, lambda_memory_mb=memory_mb, cpu_count=8) == threads


def test_lambda_threads_never_exceed_the_visible_cores() -> None:
    assert ort_threads(0, lambda_memory_mb=10240, cpu_count=2) == 2


@pytest.mark.parametrize(("cpu_count", "threads"), [(4, 4), (None, 1)])
def test_off_lambda_every_core_is_used(cpu_count: int | None, threads: int) -> None:
    assert ort_threads(0, lambda_memory_mb=None, cpu_count=cpu_count) == threads


def test_a_configured_thread_count_wins() -> None:
    assert ort_threads(3, lambda_memory_mb=1024, cpu_count=2) == 3


def test_a_negative_thread_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ort_threads is -1"):
        ort_threads(-1, lambda_memory_mb=None, cpu_count=2)
