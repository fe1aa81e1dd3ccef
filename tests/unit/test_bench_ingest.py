"""``devtools.bench_ingest`` runs its remote-latency row end to end on the real model, latencies at zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools import bench_ingest
from devtools.stage_clock import STAGES

NO_LATENCY = ["--s3-head-ms", "0-0", "--s3-get-ms", "0-0", "--index-read-ms", "0-0", "--bulk-ms", "0-0"]


def test_the_remote_row_reports_every_stage_and_one_get_per_new_upload(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ingest.json"
    argv = ["--remote", "--images", "20", "--repeats", "1", "--batch", "20", *NO_LATENCY]

    assert bench_ingest.main([*argv, "--model-dir", str(model_dir), "--out", str(out)]) == 0

    (row,) = json.loads(out.read_text())["rows"]
    assert (row["backend"], row["images"]) == ("remote", 20)
    assert set(row["stages"]["busy_ms"]) == set(STAGES)
    assert row["stages"]["busy_ms"]["infer"] > 0
    uploads = bench_ingest.BATCH + 20  # the warm-up run, then the timed one: every image new
    assert row["round_trips"]["s3 get"] == uploads  # its headers come with its bytes: no HEAD first
    assert "ratio remote: handler" in capsys.readouterr().out
