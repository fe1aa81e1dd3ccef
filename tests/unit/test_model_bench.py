"""The benchmark's bookkeeping: what a measurement reports, and the INT8 verdict rule (never timings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.architectures import MOBILENET_V2
from model.bench import ModelReport, Row, Settings, int8_verdict, measure
from model.build import build, synthetic_source


def test_a_measurement_has_a_row_per_probe_and_batch_and_the_embeddings(tmp_path: Path) -> None:
    build(MOBILENET_V2, synthetic_source(MOBILENET_V2), out_dir=tmp_path, int8=False)
    images = np.random.default_rng(3).standard_normal((3, 3, 224, 224)).astype(np.float32)

    measured = measure(tmp_path, Settings(batches=(1, 2), seconds=0.0, threads=1), images)

    assert [(row.probe, row.batch) for row in measured.rows] == [("inference", 1), ("inference", 2)]
    assert all(row.ms_per_image > 0 and row.images_per_s > 0 for row in measured.rows)
    assert measured.embeddings.shape == (3, 1280)
    assert measured.load_and_warmup_s > 0
    assert measured.peak_rss_mb > 50  # numpy + onnxruntime + the model are resident


def int8_report(*, weights: str, speedups: tuple[float, ...], mean_cosine: float) -> ModelReport:
    rows = [
        Row(probe="inference", batch=2**i, ms_per_image=1.0, images_per_s=1.0, speedup_vs_fp32=s)
        for i, s in enumerate(speedups)
    ]
    return ModelReport(
        model_id="m-int8",
        weights=weights,
        quantization="int8-qdq",
        file_mb=1.0,
        load_and_warmup_s=0.1,
        peak_rss_mb=100.0,
        rows=rows,
        mean_cosine_vs_fp32=mean_cosine,
        min_cosine_vs_fp32=mean_cosine - 0.01,
    )


@pytest.mark.parametrize(
    ("weights", "speedups", "mean_cosine", "default"),
    [
        ("IMAGENET1K_V1", (1.6, 1.5, 2.0), 0.995, True),
        ("IMAGENET1K_V1", (1.6, 1.49, 2.0), 0.995, False),  # every batch size must clear the bar
        ("IMAGENET1K_V1", (2.0, 2.0, 2.0), 0.989, False),
        ("synthetic", (2.0, 2.0, 2.0), 0.9999, None),  # synthetic weights cannot vouch for fidelity
    ],
)
def test_int8_becomes_the_default_only_when_fast_and_faithful(
    weights: str, speedups: tuple[float, ...], mean_cosine: float, default: bool | None
) -> None:
    verdict = int8_verdict(int8_report(weights=weights, speedups=speedups, mean_cosine=mean_cosine))

    assert verdict.default is default
    assert verdict.min_speedup == min(speedups)
