"""The build: graph shape and checks, manifest contents, deterministic bytes, reuse, and the command line.

MobileNetV2 with synthetic weights keeps these fast (an 8.8 MB model built in well under a second).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model import CONVERTER_VERSION
from model.architectures import MOBILENET_V2, RESNET50
from model.build import Source, build, main, synthetic_source
from model.errors import CheckpointFormatError
from model.graph import OPSET, to_bytes
from model.synthetic import synthetic_state_dict
from simsearch.manifest import ModelManifest


@pytest.fixture(scope="module")
def source() -> Source:
    return synthetic_source(MOBILENET_V2)


def test_the_manifest_describes_the_model(source: Source, tmp_path: Path) -> None:
    built = build(MOBILENET_V2, source, out_dir=tmp_path, int8=False)

    manifest = ModelManifest.load(tmp_path)
    assert manifest == built.manifest
    assert manifest.model_id == f"mobilenet_v2-synthetic-c{CONVERTER_VERSION}"
    assert (manifest.arch, manifest.weights, manifest.converter_version) == ("mobilenet_v2", "synthetic", "1")
    assert (manifest.embedding_dim, manifest.input_size, manifest.resize, manifest.opset) == (
        1280,
        224,
        256,
        17,
    )
    assert (manifest.mean, manifest.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert (manifest.color_order, manifest.layout, manifest.quantization) == ("RGB", "NCHW", "none")
    assert manifest.onnx_sha256 == hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest()
    assert (manifest.weights_file, manifest.weights_sha256) == ("synthetic", source.sha256)


def test_the_graph_is_checked_opset_17_with_a_dynamic_batch(source: Source, tmp_path: Path) -> None:
    build(MOBILENET_V2, source, out_dir=tmp_path, int8=False)
    model = onnx.load(str(tmp_path / "model.onnx"))

    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert "BatchNormalization" not in {node.op_type for node in model.graph.node}
    (dims,) = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert dims == ["batch", 3, 224, 224]


def test_embeddings_are_unit_length_and_independent_of_the_batch(source: Source, tmp_path: Path) -> None:
    build(MOBILENET_V2, source, out_dir=tmp_path, int8=False)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(7).standard_normal((3, 3, 224, 224)).astype(np.float32)

    together = session.run(["embedding"], {"input": images})[0]
    alone = np.concatenate([session.run(["embedding"], {"input": image[None]})[0] for image in images])

    assert together.shape == (3, 1280)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_the_same_weights_give_the_same_bytes(source: Source, tmp_path: Path) -> None:
    first = build(MOBILENET_V2, source, out_dir=tmp_path / "a", int8=False)
    second = build(MOBILENET_V2, synthetic_source(MOBILENET_V2), out_dir=tmp_path / "b", int8=False)

    assert (tmp_path / "a/model.onnx").read_bytes() == (tmp_path / "b/model.onnx").read_bytes()
    assert (tmp_path / "a/manifest.json").read_bytes() == (tmp_path / "b/manifest.json").read_bytes()
    assert first.manifest.onnx_sha256 == second.manifest.onnx_sha256


def test_an_equal_build_is_reused(source: Source, tmp_path: Path) -> None:
    build(MOBILENET_V2, source, out_dir=tmp_path, int8=False)
    modified = (tmp_path / "model.onnx").stat().st_mtime_ns

    again = build(MOBILENET_V2, source, out_dir=tmp_path, int8=False)

    assert again.reused
    assert (tmp_path / "model.onnx").stat().st_mtime_ns == modified


def test_a_damaged_model_file_is_rebuilt(source: Source, tmp_path: Path) -> None:
    build(MOBILENET_V2, source, out_dir=tmp_path, int8=False)
    (tmp_path / "model.onnx").write_bytes(b"truncated")

    again = build(MOBILENET_V2, source, out_dir=tmp_path, int8=False)

    assert not again.reused
    assert hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest() == again.manifest.onnx_sha256


def test_other_source_weights_are_not_reused(source: Source, tmp_path: Path) -> None:
    build(MOBILENET_V2, source, out_dir=tmp_path, int8=False)
    weights = {
        name: value * 2 if value.dtype == np.float32 else value for name, value in source.weights.items()
    }
    other = Source(source.tag, source.file_name, "0" * 64, weights)

    again = build(MOBILENET_V2, other, out_dir=tmp_path, int8=False)

    assert not again.reused
    assert again.manifest.weights_sha256 == "0" * 64


def test_a_state_dict_of_another_architecture_is_refused() -> None:
    with pytest.raises(
        CheckpointFormatError, match=r"not a mobilenet_v2 state dict: missing \['classifier\.1\.bias'"
    ):
        MOBILENET_V2.to_onnx(
            synthetic_state_dict(RESNET50.layout()),
            input_name="input",
            output_name="embedding",
            producer_version="1",
        )


def test_a_tensor_of_the_wrong_shape_is_refused(source: Source) -> None:
    weights = {**source.weights, "features.0.0.weight": np.zeros((32, 3, 5, 5), dtype=np.float32)}

    with pytest.raises(
        CheckpointFormatError, match=r"wrong shapes \['features\.0\.0\.weight \(32, 3, 5, 5\)"
    ):
        MOBILENET_V2.check(weights)


def test_to_onnx_is_deterministic(source: Source) -> None:
    def convert() -> bytes:
        return to_bytes(
            MOBILENET_V2.to_onnx(
                source.weights, input_name="input", output_name="embedding", producer_version="1"
            )
        )

    assert convert() == convert()


def test_the_command_builds_then_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--arch", "mobilenet_v2", "--synthetic", "--out", str(tmp_path / "m")]

    assert main(argv) == 0
    assert main(argv) == 0

    built, reused = capsys.readouterr().out.splitlines()
    assert built.startswith(
        f"built mobilenet_v2-synthetic-c{CONVERTER_VERSION}: {tmp_path / 'm' / 'model.onnx'}"
    )
    assert reused.startswith("reused mobilenet_v2-synthetic-c1")


def test_the_command_reports_weights_that_are_not_the_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impostor = tmp_path / "resnet50-0676ba61.pth"
    impostor.write_bytes(b"not the real file")

    status = main(["--arch", "resnet50", "--weights", str(impostor), "--out", str(tmp_path / "out")])

    assert status == 1
    assert "error (weights_integrity)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_command_refuses_a_tag_with_synthetic_weights() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--arch", "resnet50", "--synthetic", "--weights-tag", "IMAGENET1K_V2"])

    assert caught.value.code == 2
