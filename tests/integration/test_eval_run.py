"""The evaluation end to end on a tiny dataset: real ingest and query handlers, moto S3/SQS, the real model.

What it checks is the plumbing the metrics rest on: every indexed image went through ingestion, every
query came back through the API with ``K`` results plus room for the query's copies, a byte copy of a
query is found first and is left out in the duplicates-excluded view, and the report is written.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from evaluation.cli import main
from evaluation.metrics import K
from evaluation.run import RunConfig, run
from model.projection import WhiteningSettings
from tests.eval_datasets import folder_dataset

pytestmark = pytest.mark.slow


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Three classes of 8 distinct images and one class of two byte-identical images."""
    root = folder_dataset(tmp_path / "data", {"a": 8, "b": 8, "c": 8})
    (root / "twins").mkdir()
    for name in ("one.jpg", "two.jpg"):
        (root / "twins" / name).write_bytes((root / "a" / "00.jpg").read_bytes())
    return root


def test_every_image_is_indexed_and_every_query_answered_through_the_handlers(
    dataset: Path, model_dir: Path, tmp_path: Path
) -> None:
    result = run(RunConfig(dataset=dataset, model_dir=model_dir, work_dir=tmp_path / "work", threads=1))
    assert result.ingest.images == len(result.split.indexed) == 3 * 6 + 1
    assert len(result.records) == 3 * 2 + 1
    assert result.backend == "embedded"
    assert all(r.ann_recall == 1.0 for r in result.records)  # below its HNSW threshold the index is exact

    (twin,) = [r for r in result.records if r.query.label == "twins"]
    # two indexed images share its bytes: the other twin and a/00.jpg (if a/00.jpg was not a query)
    copies = sum(1 for item in result.split.indexed if item.sha256 == twin.query.sha256)
    assert len(twin.results) == K + copies
    assert twin.results[0].sha256 == twin.query.sha256
    assert twin.results[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert all(r.sha256 != twin.query.sha256 for r in twin.top(exclude_duplicates=True))


def test_the_command_writes_the_report_and_prints_the_table(
    dataset: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    status = main([str(dataset), "--out", str(out), "--model-dir", str(model_dir), "--threads", "1"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "| paper |" not in printed  # the paper's row belongs to the celebrity faces only
    assert "duplicates excluded" in printed
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["indexed"] == 19
    assert metrics["queries"] == 7
    assert (out / "examples.png").stat().st_size > 0


def test_a_dataset_folder_that_does_not_exist_is_reported_not_raised(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([str(tmp_path / "absent"), "--out", str(tmp_path / "o"), "--model-dir", str(model_dir)])
    assert status == 1
    assert "invalid_dataset" in capsys.readouterr().err


def test_a_whitening_is_fitted_on_the_indexed_images_and_served_by_both_handlers(
    dataset: Path, model_dir: Path, tmp_path: Path
) -> None:
    whitening = WhiteningSettings(method="learned", dims=6, shrinkage=0.1)
    config = RunConfig(dataset=dataset, model_dir=model_dir, work_dir=tmp_path / "work", threads=1)
    result = run(replace(config, whitening=whitening))

    assert result.manifest.projection == "learned-whitening"
    # fitted on the 19 indexed images only; "twins" has one of them, so three labels have pairs
    assert (result.manifest.projection_images, result.manifest.projection_labels) == (19, 3)
    assert "-lw6-" in result.manifest.model_id
    assert result.manifest.model_id in result.index  # the whitened vectors have an index of their own
    assert result.fit_seconds > 0
    assert len(result.records) == 7
    (twin,) = [r for r in result.records if r.query.label == "twins"]
    assert twin.results[0].sha256 == twin.query.sha256  # a byte copy still maps onto itself
    assert all(r.ann_recall == 1.0 for r in result.records)  # exact search over the whitened vectors agrees


def test_a_baseline_run_is_shown_above_the_whitened_run_in_the_report(
    dataset: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [str(dataset), "--model-dir", str(model_dir), "--threads", "1"]
    assert main([*common, "--out", str(tmp_path / "before"), "--variant", "plain"]) == 0
    baseline = tmp_path / "before" / "metrics.json"
    capsys.readouterr()
    after = [
        "--whitening",
        "pca",
        "--whitening-dims",
        "5",
        "--variant",
        "whitened",
        "--baseline",
        str(baseline),
    ]
    assert main([*common, "--out", str(tmp_path / "after"), *after]) == 0

    printed = capsys.readouterr().out.splitlines()
    names = [line.split(" | ")[0] for line in printed if line.startswith("| ours")]
    assert names == [
        "| ours (plain)",
        "| ours (plain), duplicates excluded",
        "| ours (whitened)",
        "| ours (whitened), duplicates excluded",
    ]
    report = (tmp_path / "after" / "report.md").read_text(encoding="utf-8")
    assert "Whitening: pca-whitening to 5 d, shrinkage 1, fitted on the 19 indexed images" in report
    assert "The `plain` rows are the baseline run, on the same split." in report
    metrics = json.loads((tmp_path / "after" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["whitening"].startswith("pca-whitening")


def test_an_unreadable_baseline_is_reported_before_anything_runs(
    dataset: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    argv = [str(dataset), "--out", str(tmp_path / "o"), "--model-dir", str(model_dir)]
    assert main([*argv, "--baseline", str(tmp_path / "bad.json")]) == 1
    assert "bad_baseline" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.integration
def test_the_evaluation_runs_against_opensearch_too(
    dataset: Path, model_dir: Path, tmp_path: Path, opensearch_url: str, opensearch_client: OpenSearch
) -> None:
    config = RunConfig(
        dataset=dataset,
        model_dir=model_dir,
        work_dir=tmp_path / "work",
        opensearch_url=opensearch_url,
        threads=1,
    )
    result = run(config)
    assert result.backend == "opensearch"
    assert len(result.records) == 7
    assert min(r.ann_recall for r in result.records) >= 0.9
    # the run removes what it made (a wildcard `exists` is true even when nothing matches)
    assert opensearch_client.indices.get(index=f"{result.index}*") == {}


def test_the_sweep_command_embeds_the_dataset_and_prints_every_setting(
    dataset: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evaluation.sweep import main as sweep

    argv = [str(dataset), "--model-dir", str(model_dir), "--dims", "3,5", "--shrinkage", "0.1"]
    assert sweep([*argv, "--development-seeds", "1,2", "--held-out-seed", "0"]) == 0
    rows = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert sorted(row.split(" | ")[0] for row in rows[1:]) == [
        "| learned 3 d, shrinkage 0.1",
        "| learned 5 d, shrinkage 0.1",
        "| none",
    ]
