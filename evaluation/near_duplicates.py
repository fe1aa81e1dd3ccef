"""``python -m evaluation.near_duplicates DATASET``: measure near-duplicate detection; choose its threshold.

The collection is the dataset's images (their listed duplicate pairs included) and ``--copies-per-image``
edited copies of each (``evaluation.edits``: resized, re-compressed, cropped, EXIF-rotated, re-encoded,
recoloured). Two members are duplicates when they show the same picture; every other pair, above all
two photos of the same person, must stay apart. The people are split in two halves (``--seed``): the
threshold is chosen on the first and precision and recall are reported on the second.

Each ``--model-dir`` is embedded once through the production path (``duplicate_vectors``, cached in
``--out``/embeddings); each ``--whitening`` is fitted on the development half's originals (their
vectors and person labels, never a held-out image) and applied to the same vectors, as the appended
graph of ``model.projection`` would. Writes ``report.md`` and ``near-duplicates.json`` (every curve) to
``--out`` and prints the summary and the held-out curve.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import cast, get_args

from evaluation import picture_check
from evaluation.dataset import scan
from evaluation.duplicate_benchmark import (
    DEVELOPMENT,
    HELD_OUT,
    Setup,
    Targets,
    VariantResult,
    evaluate_variant,
    score_half,
)
from evaluation.duplicate_pairs import Vectors
from evaluation.duplicate_report import curve_table, summary_table, write_report
from evaluation.duplicate_set import collection, identity_halves, read_listed_pairs
from evaluation.duplicate_vectors import embed_members
from model.architectures import ARCHITECTURES
from model.build import SYNTHETIC
from model.projection import Method, WhiteningSettings
from simsearch.errors import SimsearchError
from simsearch.manifest import ModelManifest
from simsearch.same_picture import Thumbnail

DEFAULT_MODEL_DIR = Path("build/models/mobilenet_v2")
DEFAULT_OUT = Path("build/eval/near-duplicates")
DEFAULT_COPIES = 2
DEFAULT_K = 10
RECORDED_RULE = "precision first"  # a false "duplicate" hides a photo someone wanted


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        setup = _setup(args)
        thumbnails = None  # the members' pixels: the same for every model and variant
        if args.picture_check:
            thumbnails = picture_check.member_thumbnails(
                setup.members, cache_dir=args.out / "embeddings", threads=args.threads
            )
        results = [
            result
            for model_dir in args.model_dir
            for result in _model_results(setup, model_dir, thumbnails=thumbnails, args=args)
        ]
    except SimsearchError as error:
        print(f"error ({error.code}): {error}", file=sys.stderr)
        return 1
    write_report(setup, results, args.out)
    print(summary_table(results, targets=setup.targets))
    for result in results:
        marks = [choice.threshold for choice in result.chosen.values()]
        print(f"\n{result.name}: precision/recall (all pairs) around the chosen thresholds\n")
        print(curve_table(result.development.pairs_curve, result.held_out.pairs_curve, marks=marks))
    print(f"report: {args.out / 'report.md'}", file=sys.stderr)
    return 0


def _setup(args: argparse.Namespace) -> Setup:
    items = scan(args.dataset)
    lists = _lists(args.dataset, args.duplicates)
    keys = {item.key for item in items}
    listed = [pair for path in lists for pair in read_listed_pairs(path) if {pair.key_a, pair.key_b} <= keys]
    development, held_out = identity_halves((item.label for item in items), seed=args.seed)
    return Setup(
        dataset=args.dataset,
        lists=tuple(lists),
        members=tuple(collection(items, listed, seed=args.seed, copies_per_image=args.copies_per_image)),
        listed=tuple(listed),
        development=tuple(development),
        held_out=tuple(held_out),
        seed=args.seed,
        copies_per_image=args.copies_per_image,
        k=args.k,
        targets=Targets(precision=args.precision_target, recall=args.recall_target),
    )


def _lists(dataset: Path, given: Sequence[Path] | None) -> list[Path]:
    """``--duplicates`` if given; else those of ``<dataset>.duplicates.tsv`` (beside the dataset) and
    ``evaluation/<dataset>.more-duplicates.tsv`` (pairs found by inspection) that exist."""
    if given is not None:
        return list(given)
    candidates = [
        dataset.with_name(dataset.name + ".duplicates.tsv"),
        Path(__file__).with_name(dataset.resolve().name + ".more-duplicates.tsv"),
    ]
    found = [path for path in candidates if path.is_file()]
    if not found:
        print(f"no duplicates list at {candidates[0]}: only edited copies are duplicates", file=sys.stderr)
    return found


def _model_results(
    setup: Setup,
    model_dir: Path,
    *,
    thumbnails: dict[str, Thumbnail] | None,
    args: argparse.Namespace,
) -> list[VariantResult]:
    """Each ``--whitening`` of the model, by cosine and, given ``thumbnails``, with the picture check."""
    manifest = ModelManifest.load(model_dir)
    base = embed_members(setup.members, model_dir, cache_dir=args.out / "embeddings", threads=args.threads)
    results = []
    for whitening in args.whitening:
        vectors, name = base, manifest.arch
        if whitening != "none":
            settings = WhiteningSettings.defaults(  # argparse checked the method
                cast(Method, whitening), dims=args.whitening_dims, shrinkage=args.whitening_shrinkage
            )
            vectors = _whitened(base, setup, settings)
            name = f"{manifest.arch} + {settings}"
        cosine = _variant(setup, vectors, name=name, manifest=manifest)
        gate = picture_check.gate(cosine.development.pairs_curve)
        results.append(cosine)
        if thumbnails is not None:
            try:
                results.append(_checked(setup, cosine, thumbnails, gate=gate, threads=args.threads))
            except picture_check.TooManyCandidates as error:
                print(f"{cosine.name}: no picture check: {error}", file=sys.stderr)
        if whitening == "none" and args.record:
            _record(model_dir, manifest, cosine, gate=gate)
    return results


def _checked(
    setup: Setup, result: VariantResult, thumbnails: dict[str, Thumbnail], *, gate: float, threads: int
) -> VariantResult:
    """``result``'s model with the pixel check behind ``gate``."""
    halves = [
        picture_check.checked_half(half, thumbnails, gate=gate, threads=threads)
        for half in (result.development, result.held_out)
    ]
    checked = evaluate_variant(
        f"{result.name} + picture check (cosine ≥ {gate:.3f})",
        result.model_id,
        weights=result.weights,
        development=halves[0],
        held_out=halves[1],
        targets=setup.targets,
    )
    return replace(checked, score=picture_check.SCORE)


def _record(model_dir: Path, manifest: ModelManifest, result: VariantResult, *, gate: float) -> None:
    """Write the threshold chosen by ``RECORDED_RULE`` and the picture check's gate into the model's
    manifest, where the query API and ``imgsearch duplicates`` read them; never for weights that are not
    what the manifest names."""
    provenance = weights_provenance(manifest)
    if provenance.startswith(("synthetic", "NOT the published")):
        print(f"not recorded in {model_dir}: its weights are {provenance}", file=sys.stderr)
        return
    threshold = result.chosen[RECORDED_RULE].threshold
    path = replace(manifest, near_duplicate_threshold=threshold, near_duplicate_gate=gate).save(model_dir)
    print(
        f"recorded near_duplicate_threshold {threshold:.3f} ({RECORDED_RULE}) and near_duplicate_gate "
        f"{gate:.3f} in {path}",
        file=sys.stderr,
    )


def weights_provenance(manifest: ModelManifest) -> str:
    """Are the weights the release the manifest names? Synthetic ones only show that the pipeline runs."""
    if manifest.weights == SYNTHETIC:
        return "synthetic (seeded, never trained): its figures show only that the pipeline runs"
    arch = ARCHITECTURES.get(manifest.arch)
    release = next((r for r in arch.releases if r.tag == manifest.weights), None) if arch else None
    if release is None:
        return f"{manifest.weights} ({manifest.weights_file}), a release this checkout does not know"
    pinned = release.sha256 or release.sha256_prefix
    if manifest.weights_sha256.startswith(pinned):
        return f"the published {release.tag} checkpoint ({release.file_name}, sha256 {pinned[:8]}…)"
    return (
        f"NOT the published {release.tag} checkpoint: its sha256 is {manifest.weights_sha256[:8]}…, the "
        f"release's {pinned[:8]}… (a stand-in, such as the tests' synthetic checkpoint): its figures show "
        "only that the pipeline runs"
    )


def _whitened(vectors: Vectors, setup: Setup, settings: WhiteningSettings) -> Vectors:
    """Fit on the development people's originals only, apply to every member."""
    development = set(setup.development)
    rows = [n for n, m in enumerate(setup.members) if m.edit is None and m.label in development]
    fitted = settings.fit(vectors[rows], labels=[setup.members[n].label for n in rows])
    return fitted.apply(vectors)


def _variant(setup: Setup, vectors: Vectors, *, name: str, manifest: ModelManifest) -> VariantResult:
    halves = {
        half: score_half(half, setup.members, vectors, people=people, k=setup.k, listed=setup.listed)
        for half, people in ((DEVELOPMENT, setup.development), (HELD_OUT, setup.held_out))
    }
    return evaluate_variant(
        name,
        manifest.model_id,
        weights=weights_provenance(manifest),
        development=halves[DEVELOPMENT],
        held_out=halves[HELD_OUT],
        targets=setup.targets,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation.near_duplicates", description=__doc__)
    parser.add_argument("dataset", type=Path, help="a folder with one subfolder of images per person")
    parser.add_argument(
        "--duplicates",
        type=Path,
        nargs="*",
        help="duplicates lists, kind<TAB>file_a<TAB>file_b (default: those of DATASET.duplicates.tsv "
        "beside the dataset and evaluation/<dataset name>.more-duplicates.tsv that exist)",
    )
    parser.add_argument(
        "--model-dir", type=Path, nargs="+", default=[DEFAULT_MODEL_DIR], help="one or more model directories"
    )
    parser.add_argument(
        "--whitening",
        nargs="+",
        choices=["none", *get_args(Method)],
        default=["none"],
        help="variants per model; a whitening is fitted on the development half's originals",
    )
    parser.add_argument(
        "--whitening-dims", type=int, help="default: the method's (model.projection.DEFAULTS)"
    )
    parser.add_argument("--whitening-shrinkage", type=float, help="default: the method's")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="report.md, near-duplicates.json, embeddings/"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the halves of the people and every edit")
    parser.add_argument(
        "--copies-per-image", type=int, default=DEFAULT_COPIES, help="edited copies of each image"
    )
    parser.add_argument(
        "--k", type=int, default=DEFAULT_K, help="neighbours each image asks for in the k-NN view"
    )
    parser.add_argument("--precision-target", type=float, default=0.99)
    parser.add_argument("--recall-target", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime and image-editing threads")
    parser.add_argument(
        "--no-picture-check",
        dest="picture_check",
        action="store_false",
        help="skip the variant with the pixel check behind a cosine gate (simsearch.same_picture)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help=f"write each model's {RECORDED_RULE!r} threshold (without whitening) into its manifest, which "
        "the query API and `imgsearch duplicates` then use",
    )
    return parser


__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
