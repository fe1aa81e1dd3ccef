"""``python -m devtools.bench_embedding``: what decoding and preprocessing add to inference, per image.

For batches of 1, 8 and 32, in one run and one process:

- inference: ``OnnxEmbedder.embed_tensors`` on tensors prepared beforehand (the baseline);
- end-to-end: ``OnnxEmbedder.embed_images`` from JPEG bytes (decoding and preprocessing on the embedder's
  thread pool when the batch has more than one image);
- sequential: the same work with decoding and preprocessing in a plain loop, to show what the pool buys.

The three are timed in turn within each round and the median of the rounds is kept, so a machine shared
with other work distorts their ratios less than their absolute times.

Two kinds of input: scikit-learn's 640x427 sample photos, and a 12 MP (4032x3024) JPEG made from one of
them, the size a phone uploads. Prints a table and writes JSON (default ``build/bench/embedding.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import onnxruntime
import PIL
from PIL import Image

from devtools import benchkit
from devtools.benchkit import LIMITS
from simsearch.bootstrap import inference_threads
from simsearch.embedder import OnnxEmbedder
from simsearch.preprocess import Tensor, decode_image, to_tensor

DEFAULT_OUT = Path("build/bench/embedding.json")
PHONE_SIZE = (4032, 3024)


@dataclass(frozen=True)
class Row:
    images: str
    batch: int
    inference_ms_per_image: float
    end_to_end_ms_per_image: float
    sequential_ms_per_image: float

    @property
    def ratio(self) -> float:
        """End-to-end over inference: 1.0 would mean decoding and preprocessing are free."""
        return self.end_to_end_ms_per_image / self.inference_ms_per_image

    @property
    def pool_speedup(self) -> float:
        return self.sequential_ms_per_image / self.end_to_end_ms_per_image


def phone_photo(photo: bytes) -> bytes:
    """A 12 MP JPEG at quality 90: upsampled, so smoother than a real photo, but as costly to decode."""
    image = Image.open(BytesIO(photo)).convert("RGB").resize(PHONE_SIZE, Image.Resampling.BICUBIC)
    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def measure(embedder: OnnxEmbedder, label: str, encoded: Sequence[bytes], *, batch: int, repeats: int) -> Row:
    data = [encoded[i % len(encoded)] for i in range(batch)]

    def prepare() -> Tensor:  # one decoded image alive at a time: 32 decoded 12 MP photos would be 1.2 GB
        return np.stack(
            [to_tensor(decode_image(item, limits=LIMITS).rgb, embedder.manifest) for item in data]
        )

    tensors = prepare()
    timings = benchkit.interleaved(
        {
            "inference": lambda: embedder.embed_tensors(tensors),
            "end_to_end": lambda: embedder.embed_images(data, limits=LIMITS),
            "sequential": lambda: embedder.embed_tensors(prepare()),
        },
        repeats=repeats,
        warm_up=0,  # main has warmed the session, the pool and Pillow up
    )
    per_image_ms = {name: statistics.median(values) * 1000 / batch for name, values in timings.items()}
    return Row(
        images=label,
        batch=batch,
        inference_ms_per_image=per_image_ms["inference"],
        end_to_end_ms_per_image=per_image_ms["end_to_end"],
        sequential_ms_per_image=per_image_ms["sequential"],
    )


def table(rows: Sequence[Row]) -> str:
    header = (
        f"{'images':<22}{'batch':>6}{'inference':>12}{'end-to-end':>12}{'ratio':>8}"
        f"{'sequential':>12}{'pool':>7}\n{'':<28}{'ms/img':>12}{'ms/img':>12}{'e2e/inf':>8}{'ms/img':>12}{'gain':>7}"
    )
    lines = [
        f"{row.images:<22}{row.batch:>6}{row.inference_ms_per_image:>12.1f}{row.end_to_end_ms_per_image:>12.1f}"
        f"{row.ratio:>8.2f}{row.sequential_ms_per_image:>12.1f}{row.pool_speedup:>6.2f}x"
        for row in rows
    ]
    return "\n".join([header, *lines])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_embedding", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-dir", type=Path, default=benchkit.MODEL_DIR, help="built by `make model`")
    parser.add_argument("--threads", type=int, default=0, help="0: every core, as off Lambda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (the median is kept)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not benchkit.model_is_built(args.model_dir):
        return 1

    threads = inference_threads(args.threads)
    started = time.perf_counter()
    embedder = OnnxEmbedder.load(args.model_dir, threads=threads)
    load_seconds = time.perf_counter() - started
    photos = benchkit.sample_photos()
    inputs = {"640x427 JPEG (sklearn)": photos, "4032x3024 JPEG (12 MP)": [phone_photo(photos[0])]}
    embedder.embed_images(photos, limits=LIMITS)  # first use of the pool and of Pillow's plugins
    rows = [
        measure(embedder, label, encoded, batch=batch, repeats=args.repeats)
        for label, encoded in inputs.items()
        for batch in args.batches
    ]
    peak_rss_mb = benchkit.peak_rss_mb()

    print(f"model {embedder.model_id}, {threads} threads on {os.cpu_count()} cores")
    print(f"load + warm-up {load_seconds:.2f} s")
    print(table(rows))
    print(f"peak RSS {peak_rss_mb:.0f} MB")
    report = {
        "model_id": embedder.model_id,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "load_and_warm_up_seconds": load_seconds,
        "peak_rss_mb": peak_rss_mb,
        "rows": [asdict(row) | {"ratio": row.ratio, "pool_speedup": row.pool_speedup} for row in rows],
    }
    benchkit.write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
