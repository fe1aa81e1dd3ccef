"""``python -m devtools.bench_decode``: what JPEG draft decoding costs in fidelity, and saves in memory.

Ingestion decodes a JPEG at a reduced scale (libjpeg's DCT scaling, Pillow's ``draft``) when its
shorter side stays at least ``preprocess.draft_min_side`` (3 × the model's resize). Two measures:

- ``cosine`` (the default): per image, the cosine between the embedding of the full decode and that
  of the drafted decode, min and mean per set, for each draft factor: the celebrity set as it is,
  and large photos made from it and from scikit-learn's samples (upscaled to 12 MP, and mosaics of
  untouched photos, which keep real full-resolution detail: 12 MP ones, and sizes whose draft lands
  on the least it may keep, e.g. 1365x1024 halved to 683x512). Ingestion drafts only at a factor whose minimum
  here is ≥ 0.999.
- ``memory``: a batch of ten 12 MP JPEGs through the real ingestion service (zero-latency stand-ins
  for S3 and the index), each variant in a fresh process: peak resident memory with drafting and
  bounded decodes, and with neither (every image decoded in full, ten at once, as before).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from devtools import benchkit
from devtools.benchkit import LIMITS
from simsearch.embedder import OnnxEmbedder
from simsearch.preprocess import decode_image, draft_min_side, to_tensor

CELEBRITY_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "celebrity-faces"
TWELVE_MP = (4000, 3000)


def jpeg(image: Image.Image, *, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def celebrity_files(root: Path, count: int) -> list[Path]:
    files = sorted(path for path in root.rglob("*") if path.is_file())
    step = max(1, len(files) // count) if count else 1
    return files[::step][:count] if count else files


def upscaled(sources: Sequence[bytes], *, size: tuple[int, int] = TWELVE_MP) -> Iterator[bytes]:
    """Each source, cropped to 4:3 and upscaled (bicubic) to ``size``: smooth, as a zoomed photo is."""
    for data in sources:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        yield jpeg(_fit(image, 4 / 3).resize(size, Image.Resampling.BICUBIC))


def mosaics(sources: Sequence[bytes], count: int, *, size: tuple[int, int] = TWELVE_MP) -> Iterator[bytes]:
    """``count`` 12 MP JPEGs tiled from untouched sources: detail down to the pixel, like a sharp photo."""
    tiles = [Image.open(io.BytesIO(data)).convert("RGB") for data in sources]
    rng = np.random.default_rng(0)
    for _ in range(count):
        canvas = Image.new("RGB", size)
        for top in range(0, size[1], 400):
            for left in range(0, size[0], 400):
                tile = tiles[int(rng.integers(len(tiles)))]
                x, y = (
                    int(rng.integers(0, max(1, tile.width - 400))),
                    int(rng.integers(0, max(1, tile.height - 400))),
                )
                canvas.paste(tile.crop((x, y, x + 400, y + 400)), (left, top))
        yield jpeg(canvas)


def _fit(image: Image.Image, aspect: float) -> Image.Image:
    width, height = image.size
    if width / height > aspect:
        new_width = int(height * aspect)
        return image.crop(((width - new_width) // 2, 0, (width - new_width) // 2 + new_width, height))
    new_height = int(width / aspect)
    return image.crop((0, (height - new_height) // 2, width, (height - new_height) // 2 + new_height))


def cosines(
    embedder: OnnxEmbedder, images: Sequence[bytes], *, min_side: int
) -> tuple[list[float], int, float, float]:
    """(cosine per image, how many were drafted, ms per full decode+preprocess, ms per drafted one)."""
    found: list[float] = []
    drafted = 0
    full_s = draft_s = 0.0
    for data in images:
        started = time.perf_counter()
        full = decode_image(data, limits=LIMITS)
        full_tensor = to_tensor(full.rgb, embedder.manifest)
        middle = time.perf_counter()
        small = decode_image(data, limits=LIMITS, min_side=min_side)
        small_tensor = to_tensor(small.rgb, embedder.manifest)
        full_s += middle - started
        draft_s += time.perf_counter() - middle
        drafted += small.rgb.size != full.rgb.size
        a, b = embedder.embed_tensors(np.stack([full_tensor, small_tensor]))
        found.append(float(np.dot(a, b)))
    return found, drafted, 1000 * full_s / len(images), 1000 * draft_s / len(images)


def run_cosine(args: argparse.Namespace) -> int:
    embedder = OnnxEmbedder.load(args.model_dir, threads=max(1, os.cpu_count() or 1))
    files = celebrity_files(args.celebrity, args.celebrity_images)
    celebrity = [path.read_bytes() for path in files]
    sample = celebrity[:: max(1, len(celebrity) // args.large_images)][: args.large_images]
    sets = {
        f"celebrity ({len(celebrity)}, native)": celebrity,
        f"celebrity upscaled to 12 MP ({len(sample)})": list(upscaled(sample)),
        f"12 MP mosaics of celebrity photos ({args.large_images})": list(
            mosaics(celebrity, args.large_images)
        ),
        "sklearn photos upscaled to 12 MP (2)": list(upscaled(benchkit.sample_photos())),
        **{
            f"{w}x{h} mosaics ({args.large_images})": list(mosaics(celebrity, args.large_images, size=(w, h)))
            for w, h in args.mosaic_sizes
        },
    }
    if args.sets:
        sets = {name: images for name, images in sets.items() if any(word in name for word in args.sets)}
    print(
        f"model {embedder.model_id}: resize {embedder.manifest.resize}, input {embedder.manifest.input_size}"
    )
    columns = ("factor", 7), ("min side", 9), ("drafted", 9), ("min cos", 10), ("mean cos", 10)
    header = "".join(f"{name:>{width}}" for name, width in (*columns, ("full ms", 9), ("draft ms", 9)))
    print(f"{'set':<44}{header}")
    report = []
    for name, images in sets.items():
        for factor in args.factors:
            side = draft_min_side(embedder.manifest, factor=factor)
            found, drafted, full_ms, draft_ms = cosines(embedder, images, min_side=side)
            row = {
                "set": name,
                "factor": factor,
                "min_side": side,
                "images": len(images),
                "drafted": drafted,
                "min_cosine": min(found),
                "mean_cosine": float(np.mean(found)),
                "full_ms": full_ms,
                "draft_ms": draft_ms,
            }
            report.append(row)
            print(
                f"{name:<44}{factor:>7}{side:>9}{drafted:>5}/{len(images):<3}{min(found):>10.5f}"
                f"{float(np.mean(found)):>10.5f}{full_ms:>9.1f}{draft_ms:>9.1f}"
            )
    benchkit.write_report(args.out, {"model_id": embedder.model_id, "rows": report})
    return 0


def run_memory(args: argparse.Namespace) -> int:
    """Each variant in a fresh process, so one's peak is not the other's."""
    results = {}
    for variant in ("before", "after"):
        command = [
            sys.executable,
            "-m",
            "devtools.bench_decode",
            "memory-child",
            variant,
            "--model-dir",
            str(args.model_dir),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(output.strip().splitlines()[-1])
    size = f"{TWELVE_MP[0]}x{TWELVE_MP[1]}"
    print(f"model {results['after']['model_id']}, a batch of ten {size} JPEGs through IngestionService.sync")
    print(f"{'variant':<52}{'after load MB':>14}{'peak MB':>9}{'batch s':>9}")
    names = {
        "before": "full decodes, ten at once (before)",
        "after": (
            f"draft to ≥ {results['after']['min_side']} px, "
            f"≤ {results['after']['decode_slots']} decodes at once"
        ),
    }
    for variant, result in results.items():
        print(
            f"{names[variant]:<52}{result['loaded_mb']:>14.0f}{result['peak_mb']:>9.0f}{result['seconds']:>9.1f}"
        )
    print(f"peak ratio after/before: {results['after']['peak_mb'] / results['before']['peak_mb']:.2f}")
    benchkit.write_report(args.out, results)
    return 0


def memory_child(variant: str, model_dir: Path) -> None:
    """One batch of ten 12 MP JPEGs through the service; prints one JSON line with the peaks."""
    from unittest import mock

    from devtools.remote_latency import Latency, RemoteImageStore, RemoteIndex, RemoteLatencies
    from localmode.harness import local_settings
    from simsearch import bootstrap
    from simsearch.ingestion import Change, service
    from simsearch.manifest import ModelManifest

    photos = list(mosaics(benchkit.sample_photos(), 10))
    zero = Latency(0, 0)
    latencies = RemoteLatencies(s3_head=zero, s3_get=zero, s3_mb_per_s=0, index_read=zero, index_bulk=zero)
    store = RemoteImageStore(latencies)
    for n, data in enumerate(photos):
        store.put("images", f"photos/{n}.jpg", data, content_type="image/jpeg")
    del photos
    settings = local_settings(
        model_dir=model_dir, index_path=Path("/tmp") / f"bench-decode-{os.getpid()}.sqlite"
    )
    manifest = ModelManifest.load(model_dir)
    with contextlib.ExitStack() as patches:
        if variant == "before":  # what the service did before: decode in full, as many at once as workers
            patches.enter_context(mock.patch.object(service, "_draft_side", lambda _: None))
            patches.enter_context(mock.patch.object(service, "DECODE_SLOTS", service.DEFAULT_WORKERS))
        ingestion = bootstrap.ingestion(
            settings, images=store, index=RemoteIndex(dim=manifest.embedding_dim, latencies=latencies)
        )
        benchkit.reset_peak_rss()
        loaded = benchkit.peak_rss_mb()
        started = time.perf_counter()
        outcomes = ingestion.sync([Change(bucket="images", key=f"photos/{n}.jpg") for n in range(10)])
        seconds = time.perf_counter() - started
        peak = benchkit.peak_rss_mb()
        if [o.kind for o in outcomes] != ["indexed"] * 10:
            raise RuntimeError(f"the batch was not indexed: {outcomes}")
        print(
            json.dumps(
                {
                    "model_id": manifest.model_id,
                    "loaded_mb": loaded,
                    "peak_mb": peak,
                    "seconds": seconds,
                    "min_side": draft_min_side(manifest),
                    "decode_slots": service.DECODE_SLOTS,
                }
            )
        )
    Path(settings.embedded_index_path).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_decode", description=__doc__.splitlines()[0]
    )
    parser.add_argument("measure", nargs="?", choices=["cosine", "memory", "memory-child"], default="cosine")
    parser.add_argument("variant", nargs="?", choices=["before", "after"], default="after")
    parser.add_argument("--model-dir", type=Path, default=benchkit.MODEL_DIR)
    parser.add_argument(
        "--celebrity", type=Path, default=CELEBRITY_DIR.resolve(), help="the celebrity set's folder"
    )
    parser.add_argument("--celebrity-images", type=int, default=0, help="0: every image")
    parser.add_argument("--large-images", type=int, default=40, help="12 MP images per generated set")
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 3], help="min side = factor × resize")
    parser.add_argument(
        "--mosaic-sizes",
        type=lambda text: tuple(int(n) for n in text.split("x")),
        nargs="*",
        default=[(1365, 1024), (2048, 1536), (2731, 2048)],
        help="more mosaic sets, WxH: sizes whose draft lands on (or near) the least it may keep",
    )
    parser.add_argument("--sets", nargs="*", default=[], help="only the sets whose name has one of these")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not benchkit.model_is_built(args.model_dir):
        return 1
    if args.measure == "memory-child":
        memory_child(args.variant, args.model_dir)
        return 0
    args.out = args.out or Path(f"build/bench/decode-{args.measure}.json")
    return run_cosine(args) if args.measure == "cosine" else run_memory(args)


if __name__ == "__main__":
    sys.exit(main())
