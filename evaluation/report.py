"""The evaluation report: ``report.md``, ``metrics.json`` and three PNG plots in one folder.

On the paper's dataset (a folder named ``celebrity-faces``), the Markdown puts the paper's reported row
(ResNet50, 360 queries, hit@10 = 0.819) beside ours. Ours are scored with duplicates of the query counted
(the paper's protocol) and excluded. ``metrics.json`` holds the
same numbers, for comparing runs and variants: given a baseline's ``metrics.json``, the report shows
its rows above this run's (before and after a retrieval option).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or in a container

import matplotlib.pyplot as plt
from PIL import Image

from evaluation.metrics import K, Quality, QueryRecord, percentile, quality
from evaluation.run import RunResult


@dataclass(frozen=True, kw_only=True)
class PaperRow:
    """What the paper reports for its case study (only hit@10 is given), and its dataset's folder name."""

    dataset: str = "celebrity-faces"
    model: str = "ResNet50"
    queries: int = 360
    hit_at_10: float = 0.819


PAPER = PaperRow()
EXAMPLE_QUERIES = 6
EXAMPLE_RESULTS = 5
THUMBNAIL = 96


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Every number of one run; ``metrics.json`` is this object."""

    dataset: str
    variant: str
    model_id: str
    backend: str
    index: str
    classes: int
    indexed: int
    queries: int
    seed: int
    query_fraction: float
    with_duplicates: Quality
    duplicates_excluded: Quality
    ann_recall_at_10: float
    latency_ms_p50: float
    latency_ms_p95: float
    ingest_images_per_second: float
    ingest_wall_seconds: float
    whitening: str = "none"  # what the model's projection is and what it was fitted on
    whitening_fit_seconds: float = 0.0
    split_sha256: str = ""  # of every indexed and query key with its content hash: equal means same split

    @classmethod
    def load(cls, path: Path) -> Summary:
        """A run's numbers back from its ``metrics.json`` (JSON turned the k of ``hit_at`` into strings)."""
        raw = json.loads(path.read_text(encoding="utf-8"))
        for view in ("with_duplicates", "duplicates_excluded"):
            scores = raw[view]
            raw[view] = Quality(**{**scores, "hit_at": {int(k): v for k, v in scores["hit_at"].items()}})
        return cls(**raw)


def summarise(result: RunResult, *, variant: str | None = None) -> Summary:
    """The run's numbers; ``variant`` names it in reports, by default for what it is (its whitening)."""
    records, indexed = result.records, result.split.indexed
    return Summary(
        dataset=str(result.config.dataset),
        variant=variant or _kind(result),
        model_id=result.manifest.model_id,
        backend=result.backend,
        index=result.index,
        classes=len({item.label for item in indexed}),
        indexed=len(indexed),
        queries=len(records),
        seed=result.split.seed,
        query_fraction=result.split.query_fraction,
        with_duplicates=quality(records, indexed=indexed, exclude_duplicates=False),
        duplicates_excluded=quality(records, indexed=indexed, exclude_duplicates=True),
        ann_recall_at_10=sum(r.ann_recall for r in records) / len(records),
        latency_ms_p50=percentile([r.latency_ms for r in records], 50),
        latency_ms_p95=percentile([r.latency_ms for r in records], 95),
        ingest_images_per_second=result.ingest.images_per_second,
        ingest_wall_seconds=result.ingest.wall_seconds,
        whitening=_whitening(result),
        whitening_fit_seconds=result.fit_seconds,
        split_sha256=_split_sha256(result),
    )


def _split_sha256(result: RunResult) -> str:
    lines = [f"indexed {item.key} {item.sha256}" for item in result.split.indexed]
    lines += [f"query {item.key} {item.sha256}" for item in result.split.queries]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _kind(result: RunResult) -> str:
    """What tells runs of one model apart: ``no whitening``, ``learned-whitening``, ``pca-whitening``."""
    projection = result.manifest.projection
    return "no whitening" if projection == "none" else projection


def _whitening(result: RunResult) -> str:
    manifest = result.manifest
    if manifest.projection == "none":
        return "none"
    labels = f", {manifest.projection_labels} labels" if manifest.projection_labels else ""
    return (
        f"{manifest.projection} to {manifest.embedding_dim} d, shrinkage {manifest.projection_shrinkage:g}, "
        f"fitted on the {manifest.projection_images} indexed images{labels} (base {manifest.base_model_id})"
    )


def write_report(
    result: RunResult, out: Path, *, variant: str | None = None, baseline: Summary | None = None
) -> Summary:
    """Write ``report.md``, ``metrics.json`` and the plots into ``out``; returns the numbers.

    ``baseline`` (another run's numbers, on the same split) is shown above this run in the tables.
    """
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result, variant=variant)
    (out / "metrics.json").write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    _hit_curve(summary, out / "hit_at_k.png", baseline=baseline)
    _per_class(summary, out / "per_class_hit_at_10.png")
    _examples(result.records, out / "examples.png")
    (out / "report.md").write_text(markdown(summary, baseline=baseline), encoding="utf-8")
    return summary


def metrics_table(summary: Summary, *, baseline: Summary | None = None) -> str:
    """The paper's row, the baseline's (if any) and ours, as a Markdown table."""
    header = (
        "| run | model | queries | hit@1 | hit@5 | hit@10 | P@10 | mAP@10 |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|"
    )
    paper = f"| paper | {PAPER.model} | {PAPER.queries} | – | – | {PAPER.hit_at_10:.3f} | – | – |"
    rows = _rows(summary, name=f"ours ({summary.variant})")
    if baseline is not None:
        same = baseline.variant == summary.variant  # e.g. two runs that differ in nothing but their index
        rows = _rows(baseline, name=f"{'baseline' if same else 'ours'} ({baseline.variant})") + rows
    return "\n".join([header, *([paper] if _is_the_papers(summary) else []), *rows])


def _is_the_papers(summary: Summary) -> bool:
    """The paper's numbers belong beside ours on its own dataset only (recognised by its folder name)."""
    return Path(summary.dataset).name == PAPER.dataset


def _rows(run: Summary, *, name: str) -> list[str]:
    return [
        _row(name, run.model_id, run.with_duplicates),
        _row(f"{name}, duplicates excluded", run.model_id, run.duplicates_excluded),
    ]


def markdown(summary: Summary, *, baseline: Summary | None = None) -> str:
    return f"""# Retrieval evaluation: {Path(summary.dataset).name}

Dataset `{summary.dataset}`: {summary.classes} classes; {summary.indexed} images indexed through the
ingest handler, {summary.queries} queried through `POST /search` (stratified split, seed
{summary.seed}, query fraction {summary.query_fraction}). Model `{summary.model_id}`,
{summary.backend} index `{summary.index}`. Whitening: {summary.whitening}.

{metrics_table(summary, baseline=baseline)}

"Duplicates excluded" leaves byte-identical copies of the query (same sha256) out of its results.
{_baseline_note(summary, baseline)}

| speed | value |
|---|---:|
| ANN recall@10 vs exact search over the same vectors | {summary.ann_recall_at_10:.4f} |
| query latency p50 (handler, ms) | {summary.latency_ms_p50:.1f} |
| query latency p95 (handler, ms) | {summary.latency_ms_p95:.1f} |
| ingest throughput (images/s in the ingest handler) | {summary.ingest_images_per_second:.1f} |
| ingest wall time (upload to last batch, s) | {summary.ingest_wall_seconds:.1f} |
| whitening fit (embed the indexed images + fit, s) | {summary.whitening_fit_seconds:.1f} |

![hit@k](hit_at_k.png)

![per-class hit@10, duplicates excluded](per_class_hit_at_10.png)

![example queries](examples.png)
"""


def _baseline_note(summary: Summary, baseline: Summary | None) -> str:
    """Says whether the baseline was measured on the same split: only then are the rows comparable."""
    if baseline is None:
        return ""
    same = baseline.split_sha256 == summary.split_sha256
    split = "the same split" if same else "**a different split** (the rows are not comparable)"
    return f"The `{baseline.variant}` rows are the baseline run, on {split}.\n"


def _row(name: str, model: str, scores: Quality) -> str:
    numbers = [
        scores.hit_at[1],
        scores.hit_at[5],
        scores.hit_at[10],
        scores.precision_at_10,
        scores.map_at_10,
    ]
    return f"| {name} | {model} | {scores.queries} | " + " | ".join(f"{n:.3f}" for n in numbers) + " |"


def _hit_curve(summary: Summary, path: Path, *, baseline: Summary | None) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    ks = list(range(1, K + 1))
    for name, scores in (
        ("all results", summary.with_duplicates),
        ("duplicates excluded", summary.duplicates_excluded),
    ):
        axes.plot(ks, [scores.hit_at[k] for k in ks], marker="o", label=name)
    if baseline is not None:
        before = baseline.duplicates_excluded
        axes.plot(
            ks,
            [before.hit_at[k] for k in ks],
            linestyle="--",
            color="grey",
            label=f"{baseline.variant}, dup. excl.",
        )
    if _is_the_papers(summary):
        axes.scatter(
            [K], [PAPER.hit_at_10], marker="*", s=160, color="black", label=f"paper ({PAPER.model})", zorder=3
        )
    axes.set(xlabel="k", ylabel="hit@k", ylim=(0, 1.02), xticks=ks, title=f"hit@k: {summary.model_id}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    _save(figure, path)


def _per_class(summary: Summary, path: Path) -> None:
    scores = summary.duplicates_excluded.per_class_hit_at_10
    figure, axes = plt.subplots(figsize=(7, 0.35 * len(scores) + 1.2))
    labels = list(scores)
    axes.barh(labels, [scores[label] for label in labels], color="tab:blue")
    if _is_the_papers(summary):
        paper = f"paper overall ({PAPER.hit_at_10})"
        axes.axvline(PAPER.hit_at_10, color="black", linestyle="--", label=paper)
        axes.legend(loc="lower right")
    axes.set(xlim=(0, 1), xlabel="hit@10, duplicates excluded", title="per class")
    axes.invert_yaxis()
    _save(figure, path)


def _examples(records: Sequence[QueryRecord], path: Path) -> None:
    """A few queries that fail at rank 1 and a few that succeed, each with its top results."""
    misses = [r for r in records if r.relevance(exclude_duplicates=True)[:1] != [True]]
    hits = [r for r in records if r not in misses]
    chosen = misses[: EXAMPLE_QUERIES // 2] + hits[: EXAMPLE_QUERIES - min(len(misses), EXAMPLE_QUERIES // 2)]
    figure, grid = plt.subplots(
        len(chosen),
        EXAMPLE_RESULTS + 1,
        figsize=(1.6 * (EXAMPLE_RESULTS + 1), 1.9 * len(chosen)),
        squeeze=False,
    )
    for row, record in zip(grid, chosen, strict=True):
        _tile(row[0], record.query.path, f"query\n{record.query.label}", colour="black")
        results = record.top(exclude_duplicates=True)
        for cell, result in zip(row[1:], [*results, *[None] * EXAMPLE_RESULTS], strict=False):
            if result is None:
                cell.axis("off")
                continue
            colour = "green" if result.label == record.query.label else "red"
            _tile(
                cell, _path_of(record, result.key), f"{result.label}\n{result.similarity:.2f}", colour=colour
            )
    _save(figure, path)


def _path_of(record: QueryRecord, key: str) -> Path:
    """Dataset files sit at ``<dataset>/<key>``; the query's own path tells where the dataset is."""
    return record.query.path.parents[1] / key


def _tile(axes: Any, image_path: Path, title: str, *, colour: str) -> None:
    with Image.open(image_path) as image:
        thumbnail = image.convert("RGB")
        thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
    axes.imshow(thumbnail)
    axes.set_title(title, fontsize=7, color=colour)
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2)


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
