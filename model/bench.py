"""``python -m model.bench``: inference speed, load time, memory and INT8 fidelity of the built models.

For MobileNetV2 (real weights) and ResNet50 (synthetic weights, same graph and cost as the real ones,
unless ``--resnet50-weights`` gives the real file), in float32 and INT8, at each batch size: ms per image
and images/s for inference alone, model load + warm-up time and peak RSS. Each model is measured in a
fresh process, so load time and RSS are its own. INT8 rows also give the speed-up over the float32 row
measured in the same run and the cosine of their embeddings to float32's on held-out sample images; INT8
deserves to be the default only when it is at least ``MIN_SPEEDUP`` times faster at every batch size
with a mean cosine of at least ``MIN_MEAN_COSINE``.

Each measurement is a ``Probe`` listed in ``PROBES``; another one (e.g. end-to-end from JPEG bytes) is a
function of the same signature plus an entry there, and gets its own rows in the table and the JSON.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from devtools import benchkit
from model.architectures import MOBILENET_V2, RESNET50
from model.build import (
    DEFAULT_CACHE,
    DEFAULT_OUT,
    SYNTHETIC,
    Source,
    build,
    checkpoint_source,
    model_id,
    synthetic_source,
)
from model.images import sample_tensors
from model.network import Architecture
from simsearch.manifest import ModelManifest

MIN_SPEEDUP = 1.5
MIN_MEAN_COSINE = 0.99

Batch = npt.NDArray[np.float32]
Probe = Callable[[ort.InferenceSession, ModelManifest, Batch, float], float]
"""(session, manifest, batch, seconds to spend) → wall seconds per batch."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    batches: tuple[int, ...]
    seconds: float  # measuring time per probe and batch size
    threads: int  # intra-op threads; 0 lets ONNX Runtime choose (one per physical core)


@dataclass(frozen=True, kw_only=True)
class Row:
    probe: str
    batch: int
    ms_per_image: float
    images_per_s: float
    speedup_vs_fp32: float | None = None


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """What the fresh process reports back."""

    load_and_warmup_s: float
    peak_rss_mb: float
    rows: list[Row]
    embeddings: Batch


@dataclass(frozen=True, kw_only=True)
class ModelReport:
    model_id: str
    weights: str
    quantization: str
    file_mb: float
    load_and_warmup_s: float
    peak_rss_mb: float
    rows: list[Row]
    mean_cosine_vs_fp32: float | None = None
    min_cosine_vs_fp32: float | None = None


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Whether an INT8 model clears both bars; ``default`` is None when its fidelity cannot be judged."""

    model_id: str
    min_speedup: float
    mean_cosine: float
    default: bool | None


def inference(session: ort.InferenceSession, manifest: ModelManifest, batch: Batch, seconds: float) -> float:
    """Median wall time of ``session.run`` on a ready tensor, repeated for about ``seconds``."""
    feed = {manifest.input_name: batch}
    session.run(None, feed)
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(timings) < 3 or time.perf_counter() < deadline:
        started = time.perf_counter()
        session.run(None, feed)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


PROBES: dict[str, Probe] = {"inference": inference}


def measure(model_dir: Path, settings: Settings, images: Batch) -> Measurement:
    """Load + warm-up time, every probe at every batch size, and the embeddings of ``images``."""
    manifest = ModelManifest.load(model_dir)
    started = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    session = ort.InferenceSession(
        str(model_dir / manifest.onnx_file), options, providers=["CPUExecutionProvider"]
    )
    session.run(None, {manifest.input_name: images[:1]})
    load_s = time.perf_counter() - started
    rows: list[Row] = []
    for name, probe in PROBES.items():
        for size in settings.batches:
            tiled = np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))
            per_batch = probe(session, manifest, tiled, settings.seconds)
            rows.append(
                Row(
                    probe=name, batch=size, ms_per_image=1e3 * per_batch / size, images_per_s=size / per_batch
                )
            )
    return Measurement(
        load_and_warmup_s=load_s,
        peak_rss_mb=benchkit.peak_rss_mb(),
        rows=rows,
        embeddings=session.run(None, {manifest.input_name: images})[0],
    )


def _measure_in_fresh_process(model_dir: Path, settings: Settings, images: Batch) -> Measurement:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, model_dir, settings, images).result()


def _cosines(a: Batch, b: Batch) -> npt.NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cosines: npt.NDArray[np.float64] = np.sum(a64 * b64, axis=1) / (
        np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    )
    return cosines


def bench_arch(arch: Architecture, source: Source, settings: Settings) -> list[ModelReport]:
    """Build (or reuse) the float32 and INT8 models of one source; measure both, INT8 relative to float32."""
    fp32, int8 = (
        build(arch, source, out_dir=DEFAULT_OUT / model_id(arch, source.tag, int8=quantised), int8=quantised)
        for quantised in (False, True)
    )
    images = np.concatenate(list(sample_tensors(fp32.manifest, "evaluation")))
    reference = _measure_in_fresh_process(fp32.directory, settings, images)
    quantised = _measure_in_fresh_process(int8.directory, settings, images)
    baseline = {(row.probe, row.batch): row.images_per_s for row in reference.rows}
    rows = [
        replace(row, speedup_vs_fp32=row.images_per_s / baseline[(row.probe, row.batch)])
        for row in quantised.rows
    ]
    cosines = _cosines(quantised.embeddings, reference.embeddings)
    return [
        _report(fp32.directory, fp32.manifest, reference, reference.rows),
        replace(
            _report(int8.directory, int8.manifest, quantised, rows),
            mean_cosine_vs_fp32=float(cosines.mean()),
            min_cosine_vs_fp32=float(cosines.min()),
        ),
    ]


def _report(directory: Path, manifest: ModelManifest, measured: Measurement, rows: list[Row]) -> ModelReport:
    return ModelReport(
        model_id=manifest.model_id,
        weights=manifest.weights,
        quantization=manifest.quantization,
        file_mb=(directory / manifest.onnx_file).stat().st_size / 1e6,
        load_and_warmup_s=measured.load_and_warmup_s,
        peak_rss_mb=measured.peak_rss_mb,
        rows=rows,
    )


def int8_verdict(report: ModelReport) -> Verdict:
    """Both bars: the slowest speed-up over float32 and the mean cosine to float32's embeddings.

    With synthetic weights only speed can be judged: their activations look nothing like a trained
    network's, so their cosine says nothing about the real weights' fidelity.
    """
    slowest = min(row.speedup_vs_fp32 or 0.0 for row in report.rows)
    mean_cosine = report.mean_cosine_vs_fp32 or 0.0
    fast = slowest >= MIN_SPEEDUP
    default = None if report.weights == SYNTHETIC else fast and mean_cosine >= MIN_MEAN_COSINE
    return Verdict(model_id=report.model_id, min_speedup=slowest, mean_cosine=mean_cosine, default=default)


_COLUMNS = ("model", "probe", "batch", "ms/img", "img/s", "×fp32", "load s", "RSS MB", "MB", "cos mean/min")
_WIDTHS = (36, 9, 5, 8, 8, 6, 7, 7, 6, 15)
_CONCLUSIONS = {True: "make it the default", False: "keep it an option", None: "fidelity needs real weights"}


def _line(cells: Sequence[str]) -> str:
    return " ".join(
        cell.ljust(w) if i < 2 else cell.rjust(w)
        for i, (cell, w) in enumerate(zip(cells, _WIDTHS, strict=True))
    )


def print_table(reports: Sequence[ModelReport], verdicts: Sequence[Verdict]) -> None:
    print(_line(_COLUMNS))
    for report in reports:
        cosine = ""
        if report.mean_cosine_vs_fp32 is not None:
            cosine = f"{report.mean_cosine_vs_fp32:.4f}/{report.min_cosine_vs_fp32:.4f}"
        for row in report.rows:
            speedup = "" if row.speedup_vs_fp32 is None else f"{row.speedup_vs_fp32:.2f}"
            numbers = (f"{row.ms_per_image:.2f}", f"{row.images_per_s:.1f}", speedup)
            model = (f"{report.load_and_warmup_s:.2f}", f"{report.peak_rss_mb:.0f}", f"{report.file_mb:.1f}")
            print(_line((report.model_id, row.probe, str(row.batch), *numbers, *model, cosine)))
    for verdict in verdicts:
        print(
            f"INT8 {verdict.model_id}: slowest speed-up {verdict.min_speedup:.2f}× (bar {MIN_SPEEDUP}), mean "
            f"cosine {verdict.mean_cosine:.4f} (bar {MIN_MEAN_COSINE}) → {_CONCLUSIONS[verdict.default]}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.bench", description="Inference speed, memory and INT8 fidelity of the models."
    )
    parser.add_argument("--out", type=Path, default=Path("build/bench/model.json"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per model and batch size")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ONNX Runtime's default)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--resnet50-weights",
        type=Path,
        metavar="PATH",
        help="real resnet50-0676ba61.pth, to judge INT8 fidelity",
    )
    args = parser.parse_args(argv)
    settings = Settings(batches=tuple(args.batches), seconds=args.seconds, threads=args.threads)
    mobilenet = checkpoint_source(MOBILENET_V2, tag=None, path=None, cache_dir=args.cache_dir)
    resnet = synthetic_source(RESNET50)
    if args.resnet50_weights is not None:
        resnet = checkpoint_source(RESNET50, tag=None, path=args.resnet50_weights, cache_dir=args.cache_dir)
    reports = bench_arch(MOBILENET_V2, mobilenet, settings) + bench_arch(RESNET50, resnet, settings)
    verdicts = [int8_verdict(report) for report in reports if report.quantization != "none"]
    print_table(reports, verdicts)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "onnxruntime": ort.__version__}
    document = {
        "machine": machine,
        "settings": asdict(settings),
        "models": [asdict(report) for report in reports],
        "int8_verdicts": [asdict(verdict) for verdict in verdicts],
    }
    benchkit.write_report(args.out, document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
