"""The report folder: Markdown with the paper's row beside ours, metrics.json, and plots that are PNGs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from PIL import Image

from evaluation.dataset import scan
from evaluation.metrics import QueryRecord, Retrieved
from evaluation.report import PAPER, Summary, summarise, write_report
from evaluation.run import IngestTiming, RunConfig, RunResult
from evaluation.split import stratified_split
from simsearch.manifest import ModelManifest
from tests.eval_datasets import folder_dataset

MANIFEST = ModelManifest(
    model_id="tiny-test-c1",
    arch="tiny",
    weights="test",
    converter_version="1",
    embedding_dim=4,
    input_size=32,
    resize=36,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    opset=17,
    onnx_sha256="0" * 64,
    weights_file="none",
    weights_sha256="0" * 64,
)


def result_for(dataset: Path, tmp_path: Path) -> RunResult:
    """Every query answered with the indexed images of its own class first, then the others."""
    split = stratified_split(scan(dataset), seed=0)
    records = []
    for n, query in enumerate(split.queries):
        ranked = sorted(split.indexed, key=lambda item: item.label != query.label)
        results = tuple(
            Retrieved(key=i.key, label=i.label, sha256=i.sha256, similarity=0.9 - 0.01 * r)
            for r, i in enumerate(ranked[:10])
        )
        records.append(QueryRecord(query=query, results=results, latency_ms=10.0 + n, ann_recall=1.0))
    return RunResult(
        config=RunConfig(dataset=dataset, model_dir=tmp_path, work_dir=tmp_path / "work"),
        manifest=MANIFEST,
        backend="embedded",
        index="eval-tiny-test-c1",
        split=split,
        ingest=IngestTiming(images=len(split.indexed), handler_seconds=2.0, wall_seconds=3.0),
        records=tuple(records),
    )


def test_the_report_folder_holds_markdown_metrics_and_three_png_plots(tmp_path: Path) -> None:
    dataset = folder_dataset(tmp_path / PAPER.dataset, {"a": 6, "b": 6, "c": 6})
    out = tmp_path / "report"
    summary = write_report(result_for(dataset, tmp_path), out, variant="baseline")

    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert f"| paper | {PAPER.model} | {PAPER.queries} | – | – | {PAPER.hit_at_10:.3f} |" in markdown
    assert "| ours (baseline), duplicates excluded | tiny-test-c1 | 3 | 1.000 |" in markdown
    for plot in ("hit_at_k.png", "per_class_hit_at_10.png", "examples.png"):
        assert f"]({plot})" in markdown
        with Image.open(out / plot) as image:
            assert image.format == "PNG"
            assert min(image.size) > 100

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["duplicates_excluded"]["hit_at"]["10"] == 1.0
    assert metrics["queries"] == summary.queries == 3
    assert metrics["ingest_images_per_second"] == 15 / 2.0  # 15 indexed in 2 s of handler time
    assert metrics["latency_ms_p50"] == 11.0


def test_the_papers_row_is_shown_on_its_dataset_only(tmp_path: Path) -> None:
    dataset = folder_dataset(tmp_path / "digits", {"a": 6, "b": 6, "c": 6})
    write_report(result_for(dataset, tmp_path), tmp_path / "report", variant="baseline")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "| paper |" not in markdown
    assert "| ours (baseline) | tiny-test-c1 | 3 |" in markdown


def test_metrics_json_reads_back_into_the_same_numbers(tmp_path: Path) -> None:
    dataset = folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6})
    summary = write_report(result_for(dataset, tmp_path), tmp_path / "report", variant="baseline")
    assert Summary.load(tmp_path / "report" / "metrics.json") == summary


def test_a_baseline_from_another_split_is_flagged_as_not_comparable(tmp_path: Path) -> None:
    dataset = folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6})
    before = replace(summarise(result_for(dataset, tmp_path), variant="other"), split_sha256="0" * 64)
    write_report(result_for(dataset, tmp_path), tmp_path / "report", variant="after", baseline=before)
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "| ours (other), duplicates excluded | tiny-test-c1 | 3 |" in markdown
    assert "The `other` rows are the baseline run, on **a different split**" in markdown
    assert "Whitening: none." in markdown


def test_the_same_split_reached_by_another_path_is_the_same_split(tmp_path: Path) -> None:
    dataset = folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6})
    (tmp_path / "link").symlink_to(dataset)
    before = summarise(result_for(tmp_path / "link", tmp_path), variant="before")
    write_report(result_for(dataset, tmp_path), tmp_path / "report", variant="after", baseline=before)
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "The `before` rows are the baseline run, on the same split." in markdown


def test_each_run_is_labelled_by_what_it_is_when_no_variant_is_named(tmp_path: Path) -> None:
    dataset = folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6})
    plain = result_for(dataset, tmp_path)
    whitened = replace(plain, manifest=replace(plain.manifest, projection="learned-whitening"))

    write_report(whitened, tmp_path / "report", baseline=summarise(plain))

    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "| ours (no whitening) |" in markdown
    assert "| ours (learned-whitening) |" in markdown


def test_a_baseline_of_the_same_kind_is_told_apart_as_the_baseline(tmp_path: Path) -> None:
    dataset = folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6})
    result = result_for(dataset, tmp_path)

    write_report(result, tmp_path / "report", baseline=summarise(result))

    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "| baseline (no whitening) |" in markdown
    assert "| ours (no whitening) |" in markdown
