"""Static INT8 quantisation (QDQ) with ONNX Runtime's tools, calibrated on images shipped in packages.

Settings chosen by the INT8 study (mean cosine to float32 on held-out sample images), on AVX2 without VNNI:

- ``reduce_range``: 7-bit weights. The AVX2 u8×s8 kernels add pairs of products in int16 and saturate;
  with full-range weights MobileNetV2's mean cosine to fp32 fell from 0.94 to 0.89 *and* it ran slower.
- per-channel weights: per-tensor scales lost far more (MobileNetV2 mean cosine 0.87).
- MinMax with a moving average over the calibration images: as faithful as the 99.99th percentile
  (0.965 on MobileNetV2), deterministic, and without histograms of every ResNet50 activation.
- The embedding head (pooling, L2 normalisation) stays in float32: a unit vector's 1280 small components
  would lose most of their precision in 8 bits.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from model.graph import HEAD_NODES, to_bytes
from model.images import sample_tensors
from simsearch.manifest import ModelManifest


class _Calibration(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
    """Feeds the calibration images one at a time, each under the model's input name."""

    def __init__(self, tensors: Iterator[npt.NDArray[np.float32]], *, input_name: str) -> None:
        self._tensors = tensors
        self._input_name = input_name

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        tensor = next(self._tensors, None)
        return None if tensor is None else {self._input_name: tensor}


def quantize_int8(model: bytes, manifest: ModelManifest) -> bytes:
    """``model`` (float32, as ``manifest`` describes it) with QDQ INT8 convolutions, calibrated on samples."""
    with tempfile.TemporaryDirectory(prefix="simsearch-int8-") as scratch:
        fp32, prepared, int8 = (Path(scratch) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32.write_bytes(model)
        quant_pre_process(str(fp32), str(prepared))  # shape inference + graph cleanup the quantiser expects
        quantize_static(
            str(prepared),
            str(int8),
            _Calibration(sample_tensors(manifest, "calibration"), input_name=manifest.input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=[*HEAD_NODES, manifest.output_name],
            extra_options={"CalibMovingAverage": True},
        )
        return to_bytes(onnx.load(str(int8)))
