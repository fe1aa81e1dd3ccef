"""``python -m model.whiten SOURCE``: fit a whitening on a corpus; write the whitened model beside its base.

SOURCE is the corpus the index serves: a local folder or ``s3://bucket/prefix``. Every image is
embedded with the base model; labels are taken as the ingestion takes them (``x-amz-meta-label``, else
the first key segment) and used by ``--method learned`` only. Images that cannot be decoded are
skipped and counted, as the ingestion would refuse them too.

The output is a new model directory with a new model id, so its vectors go to an index of their own:
deploy it (``-c model_dir=...``) and re-index the bucket (``imgsearch ingest s3://...``). Example::

    python -m model.whiten s3://my-images --model-dir build/models/mobilenet_v2 --method learned
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import get_args

import numpy as np
import numpy.typing as npt

from model.projection import DEFAULTS, Method, WhiteningSettings, whitened_model
from simsearch.bootstrap import inference_threads
from simsearch.embedder import OnnxEmbedder
from simsearch.errors import ImageTooLargeError, InvalidImageError, InvalidRequestError, SimsearchError
from simsearch.labels import label_for
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.settings import Settings

BATCH = 32


@dataclass(frozen=True)
class CorpusImage:
    """One image of the corpus: its key, the label the ingestion would give it, and how to read it."""

    key: str
    label: str | None
    read: Callable[[], bytes]


@dataclass(frozen=True, kw_only=True)
class Embedded:
    vectors: npt.NDArray[np.float32]
    labels: list[str | None]
    skipped: list[str]  # keys of images that could not be decoded


def folder_corpus(folder: Path) -> Iterator[CorpusImage]:
    """Every file under ``folder``, keyed by its relative path (``<label>/<file>`` gives the label)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        key = path.relative_to(folder).as_posix()
        yield CorpusImage(key=key, label=label_for(key, {}), read=path.read_bytes)


def s3_corpus(s3: object, url: str, *, skip_prefix: str) -> Iterator[CorpusImage]:
    """Every object under ``url`` except query uploads, labelled from its metadata or key."""
    from simsearch.backfill import parse_s3_url
    from simsearch.storage import S3ImageStore

    bucket, prefix = parse_s3_url(url)
    store = S3ImageStore(s3)
    for listed in store.list(bucket, prefix):
        if listed.key.startswith(skip_prefix):
            continue
        stored = store.head(bucket, listed.key)
        yield CorpusImage(
            key=stored.key, label=label_for(stored.key, stored.metadata), read=partial(store.read, stored)
        )


def embed_corpus(
    embedder: OnnxEmbedder,
    corpus: Iterator[CorpusImage],
    *,
    limits: ImageLimits,
    on_batch: Callable[[int], None] = lambda _: None,
) -> Embedded:
    """Base-model vectors of every decodable image, a batch of ``BATCH`` per inference call."""
    vectors: list[npt.NDArray[np.float32]] = []
    labels: list[str | None] = []
    skipped: list[str] = []
    while batch := list(islice(corpus, BATCH)):
        images = []
        for image in batch:
            try:
                images.append(decode_image(image.read(), limits=limits).rgb)
                labels.append(image.label)
            except (InvalidImageError, ImageTooLargeError):
                skipped.append(image.key)
        vectors.append(embedder.embed(images))
        on_batch(len(batch))
    width = embedder.dim
    return Embedded(
        vectors=np.concatenate(vectors) if vectors else np.empty((0, width), np.float32),
        labels=labels,
        skipped=skipped,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="the corpus: a folder, or s3://bucket/prefix")
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="the base model (model.onnx + manifest)"
    )
    parser.add_argument("--method", choices=get_args(Method), default="learned")
    parser.add_argument("--dims", type=int, help="output dimensions (default: the method's, below)")
    parser.add_argument(
        "--shrinkage", type=float, help=f"defaults: {'; '.join(str(d) for d in DEFAULTS.values())}"
    )
    parser.add_argument("--out", type=Path, help="output directory (default: build/models/<new model id>)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: one per core)")


def run(args: argparse.Namespace) -> int:
    """Fit and write the whitened model; 0 on success, 1 on a typed error."""
    from tqdm import tqdm

    try:
        base = ModelManifest.load(args.model_dir)
        embedder = OnnxEmbedder.load(args.model_dir, threads=inference_threads(args.threads))
        with tqdm(unit="image", desc=f"embedding {args.source} with {base.model_id}", file=sys.stderr) as bar:
            embedded = embed_corpus(
                embedder, _corpus(args.source), limits=ImageLimits.deployed(), on_batch=bar.update
            )
        chosen = WhiteningSettings.defaults(args.method, dims=args.dims, shrinkage=args.shrinkage)
        fitted = chosen.fit(embedded.vectors, labels=embedded.labels)
        staging = args.out or Path("build/models") / f"{base.model_id}-whitening.partial"
        manifest = whitened_model(args.model_dir, fitted, out_dir=staging)
        out = args.out or _moved(staging, staging.with_name(manifest.model_id))
    except SimsearchError as error:
        print(f"error ({error.code}): {error}", file=sys.stderr)
        return 1
    for key in embedded.skipped:
        print(f"skipped (not a decodable image): {key}", file=sys.stderr)
    labels = f" with {fitted.labels} labels" if fitted.labels else ""
    print(f"fitted {manifest.projection} on {fitted.images} images{labels}: {manifest.model_id} in {out}")
    print("deploy it with -c model_dir=... and re-index the bucket: its vectors go to a new index")
    return 0


def _moved(staging: Path, target: Path) -> Path:
    """``staging`` renamed to ``target``; an earlier fit there has the same id, hence the same map."""
    shutil.rmtree(target, ignore_errors=True)
    return staging.replace(target)


def _corpus(source: str) -> Iterator[CorpusImage]:
    if source.startswith("s3://"):
        import boto3

        # the caller's own region and credentials, as the aws CLI would use them
        return s3_corpus(boto3.client("s3"), source, skip_prefix=Settings.query_upload_prefix)
    folder = Path(source)
    if not folder.is_dir():
        raise InvalidRequestError(f"{source} is neither a folder nor an s3:// URL")
    return folder_corpus(folder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.whiten", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
