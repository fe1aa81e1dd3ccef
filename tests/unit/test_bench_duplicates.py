"""``devtools.bench_duplicates`` runs end to end on generated photographs and counts what a call reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools import bench_duplicates


def test_each_checked_call_reads_the_image_and_each_candidate_once(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "duplicates.json"
    argv = ["--dataset", str(tmp_path / "absent"), "--images", "4", "--s3-get", "0"]

    assert bench_duplicates.main([*argv, "--model-dir", str(model_dir), "--out", str(out)]) == 0

    report = json.loads(out.read_text())
    assert (report["images"], report["documents"]) == (4, 8)
    assert report["gets_per_call"] == pytest.approx(report["candidates_per_call"] + 1)
    assert report["candidates_per_call"] >= 1  # every original's edited copy is at least a candidate
    assert set(report["rows"]) == {"picture check", "cosine alone"}
    assert "picture check ÷ cosine alone (p50): " in capsys.readouterr().out
