"""The golden numbers of the converted models (``tests/fixtures/golden_model.json``) and how ours meet them.

The golden embeddings are torchvision's un-normalised pooled features and ours are L2-normalised, so both
sides are normalised before comparing: cosine per row, and the largest difference relative to the largest
value (the golden README's two bounds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from simsearch.manifest import ModelManifest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN: dict[str, Any] = json.loads((ROOT / "tests/fixtures/golden_model.json").read_text(encoding="utf-8"))
TOLERANCE = GOLDEN["tolerance"]


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
