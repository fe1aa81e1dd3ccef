"""``imgsearch duplicates [--near [THRESHOLD]] [--json]``: a whole index's duplicates, and what they cost.

Exact duplicates (the same bytes under several keys) are found by content id in one scan; with
``--near``, near duplicates too (the same picture in other bytes: one k-NN search per content, joined
with union-find, ``simsearch.duplicates``). ``--near`` alone decides them as the API does, by the picture
check: candidates at least the serving model's gate similar whose thumbnails line up with the content's
(each image read once from the bucket), falling back to the model's cosine threshold for an image that
cannot be read; the model's values are its manifest's when the model is on this machine, else the
deployment's. ``--near THRESHOLD`` decides by the cosine alone, at that value, and reads no image.
The report counts them, lists the largest clusters, and says how many bytes deleting all but one file of
each would reclaim (the largest file is the one kept).

The index is the serving index of the running local stack, or of the deployment ``SIMSEARCH_*``
variables name. Nothing is deleted. Exit status: 0 (duplicates or not), 1 if the index cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localmode import discovery
from localmode.errors import CommandFailed
from simsearch import duplicates
from simsearch.errors import ConfigError
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits

if TYPE_CHECKING:
    from simsearch.duplicates import Cluster, Content, PictureCheck
    from simsearch.index.port import IndexInfo, VectorIndex
    from simsearch.settings import Settings

DEFAULT_TOP = 10
_SETTING = object()  # --near without a value: the deployment's threshold (argparse types only strings)


@dataclass(frozen=True, kw_only=True)
class Report:
    """One index's duplicates: every content, and the clusters of more than one image."""

    index: str
    contents: tuple[Content, ...]
    clusters: tuple[Cluster, ...]
    threshold: float | None  # None: near duplicates were not looked for
    check: PictureCheck | None = None  # how they were decided, unless by ``threshold`` alone

    @property
    def images(self) -> int:
        return sum(len(content.images) for content in self.contents)

    @property
    def copied(self) -> list[Content]:
        """The contents stored more than once."""
        return [content for content in self.contents if len(content.images) > 1]

    @property
    def exact_reclaimable(self) -> int:
        return sum(content.wasted for content in self.contents)

    @property
    def near_clusters(self) -> list[Cluster]:
        return [cluster for cluster in self.clusters if len(cluster.contents) > 1]

    @property
    def near_reclaimable(self) -> int:
        return sum(cluster.reclaimable - cluster.exact_reclaimable for cluster in self.near_clusters)

    def to_json(self) -> dict[str, Any]:
        near = None
        if self.threshold is not None:
            near = {
                "clusters": len(self.near_clusters),
                "contents": sum(len(cluster.contents) for cluster in self.near_clusters),
                "reclaimable_bytes": self.near_reclaimable,
            }
        return {
            "index": self.index,
            "images": self.images,
            "contents": len(self.contents),
            "threshold": self.threshold,
            "picture_check": None
            if self.check is None
            else {"gate": self.check.gate, "threshold": self.check.threshold},
            "exact": {
                "contents": len(self.copied),
                "images": sum(len(content.images) for content in self.copied),
                "reclaimable_bytes": self.exact_reclaimable,
            },
            "near": near,
            "reclaimable_bytes": self.exact_reclaimable + self.near_reclaimable,
            "clusters": [_cluster_json(cluster) for cluster in self.clusters],
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--near",
        nargs="?",
        type=_threshold,
        const=_SETTING,
        metavar="THRESHOLD",
        help="near duplicates too: the same picture in other bytes, decided by comparing pixels (each "
        "candidate read from the bucket); with THRESHOLD, other bytes at least that similar (cosine alone)",
    )
    parser.add_argument(
        "--top", type=int, default=DEFAULT_TOP, help="how many of the largest clusters to list"
    )


def _threshold(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a similarity between 0 and 1")
    return value


def run(args: argparse.Namespace) -> int:
    from simsearch.index import connect_collection

    settings, images = discovery.target_images()
    with closing(connect_collection(settings)) as collection, closing(images):
        serving = next(iter(collection.pointed("serving")), None)
        if serving is None:
            raise CommandFailed("no index serves yet: start the stack (`imgsearch serve`) or deploy first")
        threshold, check = args.near, None
        if args.near is _SETTING:
            threshold, gate = model_rule(serving, settings)
            check = duplicates.PictureCheck(
                gate=gate,
                threshold=settings.picture_match_threshold,
                thumbnails=duplicates.stored_thumbnails(images, limits=ImageLimits.of(settings)),
            )
        found = find(collection.index(serving), threshold=threshold, check=check, quiet=args.json)
    print(json.dumps(found.to_json(), indent=2) if args.json else text(found, top=args.top))
    return 0


def model_rule(serving: IndexInfo, settings: Settings) -> tuple[float, float]:
    """The serving model's measured cosine threshold and picture-check gate when its manifest is on this
    machine, else the settings'."""
    defaults = (settings.near_duplicate_threshold, settings.near_duplicate_gate)
    if serving.model_uri.startswith("s3://"):
        return defaults
    try:
        manifest = ModelManifest.load(Path(serving.model_uri))
    except ConfigError:
        return defaults
    return manifest.near_rule(threshold=defaults[0], gate=defaults[1])


def find(
    index: VectorIndex, *, threshold: float | None, check: PictureCheck | None = None, quiet: bool
) -> Report:
    """Scan ``index`` (a progress bar per step on stderr unless ``quiet``) and cluster its duplicates:
    exact ones only when ``threshold`` is None, else near ones too (decided by ``check`` if given)."""
    from tqdm import tqdm

    with tqdm(total=index.count(), unit="image", desc="scan", file=sys.stderr, disable=quiet) as bar:
        found = duplicates.contents(_counted(index, bar))
    groups: list[list[Content]] = [[content] for content in found]
    if threshold is not None:
        with tqdm(total=len(found), unit="content", desc="compare", file=sys.stderr, disable=quiet) as bar:
            groups = duplicates.near_groups(
                index, found, threshold=threshold, check=check, on_compared=lambda _: bar.update()
            )
    return Report(
        index=index.name,
        contents=tuple(found),
        clusters=tuple(duplicates.clusters(groups)),
        threshold=threshold,
        check=check,
    )


def text(report: Report, *, top: int) -> str:
    """The report for a person: counts, bytes, and the ``top`` largest clusters file by file (the
    largest file of a cluster is kept; each content's other copies follow it, marked "same bytes")."""
    lines = [
        f"{report.index}: {report.images:,} images, {len(report.contents):,} distinct contents",
        f"exact duplicates: {len(report.copied):,} contents stored more than once "
        f"({sum(len(c.images) for c in report.copied):,} images); "
        f"{_size(report.exact_reclaimable)} reclaimable by keeping one copy of each",
    ]
    if report.threshold is None:
        lines.append("near duplicates: not looked for (add --near [THRESHOLD])")
    else:
        near = report.near_clusters
        rule = f"similarity ≥ {report.threshold:g}"
        if report.check is not None:
            rule = (
                f"similarity ≥ {report.check.gate:g} and pixels matching ≥ {report.check.threshold:g}; "
                f"unreadable images: {rule}"
            )
        lines.append(
            f"near duplicates ({rule}): {len(near):,} clusters of "
            f"{sum(len(c.contents) for c in near):,} contents; "
            f"{_size(report.near_reclaimable)} more reclaimable by keeping the largest of each"
        )
    if not report.clusters:
        return "\n".join([*lines, "no duplicates"])
    lines.append(f"largest clusters ({min(top, len(report.clusters))} of {len(report.clusters):,}):")
    for rank, cluster in enumerate(report.clusters[:top], start=1):
        lines.append(
            f"{rank:>4}. {cluster.images} images of {len(cluster.contents)} "
            f"content{'s' if len(cluster.contents) > 1 else ''}, {_size(cluster.reclaimable)} reclaimable"
        )
        lines += _cluster_lines(cluster)
    return "\n".join(lines)


def _cluster_lines(cluster: Cluster) -> list[str]:
    lines = []
    for n, content in enumerate(cluster.contents):
        for m, image in enumerate(content.images):
            role = "↳ same bytes" if m else ("kept" if n == 0 else "near duplicate")
            lines.append(f"        {_size(content.size):>9}  {role:<14}  {image.metadata.key}")
    return lines


def _cluster_json(cluster: Cluster) -> dict[str, Any]:
    return {
        "images": cluster.images,
        "reclaimable_bytes": cluster.reclaimable,
        "contents": [
            {
                "content_sha256": content.content_id,
                "bytes": content.size,
                "images": [{"id": image.image_id, "key": image.metadata.key} for image in content.images],
            }
            for content in cluster.contents
        ],
    }


def _counted(index: VectorIndex, bar: Any) -> Any:
    for image in index.scan():
        bar.update()
        yield image


def _size(count: int) -> str:
    """Bytes for a person: 812 B, 45.3 kB, 1.2 MB (powers of 1000, as file managers show them)."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"
