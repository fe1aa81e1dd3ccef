"""``python -m evaluation DATASET --out DIR`` (also ``imgsearch eval``): evaluate, then write the report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from evaluation.split import DEFAULT_QUERY_FRACTION, DEFAULT_SEED
from model.projection import DEFAULTS, Method, WhiteningSettings
from simsearch.errors import SimsearchError
from simsearch.settings import Engine

DEFAULT_MODEL_DIR = Path("build/models/mobilenet_v2")  # what `make model` builds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation's arguments, for ``python -m evaluation`` and the ``imgsearch eval`` subcommand."""
    parser.add_argument("dataset", type=Path, help="a folder with one subfolder of images per class")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md, metrics.json, plots")
    parser.add_argument(
        "--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="model.onnx + manifest.json"
    )
    parser.add_argument(
        "--variant", help="the name this run has in the report (default: its whitening, e.g. 'no whitening')"
    )
    parser.add_argument(
        "--opensearch-url",
        default="",
        help="index into this OpenSearch node (no auth) instead of the embedded index",
    )
    parser.add_argument(
        "--engine",
        choices=get_args(Engine),
        default="lucene",
        help="k-NN engine of the OpenSearch index (the Maven Central test node has lucene only)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the stratified split")
    parser.add_argument("--query-fraction", type=float, default=DEFAULT_QUERY_FRACTION)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: one per core)")
    whitening = parser.add_argument_group("whitening (fitted on the indexed images, applied on both paths)")
    whitening.add_argument("--whitening", choices=["none", *get_args(Method)], default="none")
    whitening.add_argument("--whitening-dims", type=int, help="default: the method's, below")
    whitening.add_argument(
        "--whitening-shrinkage", type=float, help=f"defaults: {'; '.join(str(d) for d in DEFAULTS.values())}"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="METRICS_JSON",
        help="another run's metrics.json, shown above this run in the report (before/after)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__)
    add_arguments(parser)
    return evaluate(parser.parse_args(argv))


def evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation that ``add_arguments``' options describe; 0 on success, 1 on a typed error."""
    # imported here: moto, boto3 and matplotlib take a second or two, which `imgsearch --help` need not wait
    from evaluation.report import Summary, metrics_table, write_report
    from evaluation.run import RunConfig, run

    config = RunConfig(
        dataset=args.dataset,
        model_dir=args.model_dir,
        work_dir=args.out / "work",
        opensearch_url=args.opensearch_url,
        engine=args.engine,
        seed=args.seed,
        query_fraction=args.query_fraction,
        threads=args.threads,
        whitening=_whitening(args),
    )
    try:
        baseline = Summary.load(args.baseline) if args.baseline else None
    except (OSError, ValueError, TypeError, KeyError) as error:
        print(f"error (bad_baseline): cannot read {args.baseline}: {error}", file=sys.stderr)
        return 1
    try:
        result = run(config, progress=lambda line: print(line, file=sys.stderr))
    except SimsearchError as error:
        print(f"error ({error.code}): {error}", file=sys.stderr)
        return 1
    summary = write_report(result, args.out, variant=args.variant, baseline=baseline)
    print(metrics_table(summary, baseline=baseline))
    print(f"report: {args.out / 'report.md'}", file=sys.stderr)
    return 0


def _whitening(args: argparse.Namespace) -> WhiteningSettings | None:
    if args.whitening == "none":
        return None
    return WhiteningSettings.defaults(
        args.whitening, dims=args.whitening_dims, shrinkage=args.whitening_shrinkage
    )
