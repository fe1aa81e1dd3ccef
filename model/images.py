"""Real photographs that ship inside installed packages, so nothing needs a download: the one source of
sample photos for the demo's corpus, INT8 calibration and fidelity checks, the benchmarks and the tests.

scikit-image ships a few dozen images in its wheel (``skimage/data``; the others it can fetch are never
used here) and scikit-learn ships two (``china.jpg``, ``flower.jpg``). Every third scikit-image image and
both scikit-learn ones are held out of calibration, so fidelity is measured on images the quantiser never saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from simsearch.manifest import ModelManifest
from simsearch.preprocess import to_tensor

Split = Literal["calibration", "evaluation"]

_PHOTO_SUFFIXES = (".png", ".jpg")  # the packages' other files are data, not photographs
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


def sample_photos() -> dict[str, Traversable]:
    """Every sample photograph by ``<package>/<file>``, in name order; the first key segment labels it."""
    folders = {
        "scikit-image": files("skimage") / "data",
        "scikit-learn": files("sklearn") / "datasets" / "images",
    }
    return {
        f"{label}/{item.name}": item
        for label, folder in folders.items()
        for item in sorted(folder.iterdir(), key=lambda item: item.name)
        if item.name.lower().endswith(_PHOTO_SUFFIXES)
    }


def photograph(name: str) -> bytes:
    """The bytes of one of scikit-learn's 640x427 photographs: ``"china.jpg"`` or ``"flower.jpg"``."""
    return (files("sklearn") / "datasets" / "images" / name).read_bytes()


def sample_files(split: Split) -> list[Traversable]:
    """The image files of one split, in a fixed order (calibration must not depend on directory order)."""
    photos = sample_photos()
    skimage_files = [item for key, item in photos.items() if key.startswith("scikit-image/")]
    if split == "calibration":
        return [item for index, item in enumerate(skimage_files) if index % 3 != 2]
    held_out = [item for index, item in enumerate(skimage_files) if index % 3 == 2]
    return held_out + [photos[f"scikit-learn/{name}"] for name in SKLEARN_PHOTOS]


def sample_tensors(manifest: ModelManifest, split: Split) -> Iterator[npt.NDArray[np.float32]]:
    """Each image of the split as a (1, 3, S, S) tensor, through the preprocessing the model's users run."""
    for item in sample_files(split):
        with item.open("rb") as stream, Image.open(stream) as image:
            yield to_tensor(image, manifest)[None]
