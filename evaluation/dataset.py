"""A folder-per-class image dataset as the evaluation reads it: label, object key, bytes' sha256.

The object key is ``<label>/<file name>``: ingestion labels an image by the first segment of its key
(``simsearch.labels``), so uploading a dataset this way gives every image its class as its label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from simsearch.errors import SimsearchError
from simsearch.formats import is_image_name
from simsearch.ids import content_id


class DatasetError(SimsearchError):
    """The dataset folder cannot be evaluated (missing, too few classes or images); the message says why."""

    code = "invalid_dataset"


@dataclass(frozen=True, kw_only=True, slots=True)
class Item:
    """One image of the dataset."""

    path: Path
    label: str
    key: str
    sha256: str


def scan(root: Path) -> list[Item]:
    """Every image under ``root/<label>/``, sorted by key, so the same folder always gives the same list.

    Raises:
        DatasetError: ``root`` is not a folder, has fewer than two class folders, or a class has fewer
            than two images (a class needs one image to index and one to query).
    """
    if not root.is_dir():
        raise DatasetError(f"dataset {root} is not a folder; give a folder with one subfolder per class")
    items = [_item(path) for path in sorted(root.glob("*/*")) if _is_image(path)]
    per_class = Counter(item.label for item in items)
    if len(per_class) < 2:
        raise DatasetError(
            f"dataset {root} has {len(per_class)} class folder(s) with images; at least 2 are needed"
        )
    small = sorted(label for label, count in per_class.items() if count < 2)
    if small:
        raise DatasetError(f"classes {small[:5]} of {root} have fewer than 2 images; each needs at least 2")
    return sorted(items, key=lambda item: item.key)


def duplicate_counts(indexed: Sequence[Item]) -> Counter[str]:
    """How many indexed images have each content hash: a query's exact copies are found by its hash."""
    return Counter(item.sha256 for item in indexed)


def _is_image(path: Path) -> bool:
    return path.is_file() and is_image_name(path.name) and not path.name.startswith(".")


def _item(path: Path) -> Item:
    label = path.parent.name
    return Item(
        path=path,
        label=label,
        key=f"{label}/{path.name}",
        sha256=content_id(path.read_bytes()),  # what ingestion records as content_sha256
    )
