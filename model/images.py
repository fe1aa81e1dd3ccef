"""Real photographs that ship inside installed packages: INT8 calibration and fidelity checks, offline.

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

_IMAGE_SUFFIXES = (".png", ".jpg")


def _skimage_files() -> list[Traversable]:
    folder = files("skimage") / "data"
    return sorted(
        (item for item in folder.iterdir() if item.name.endswith(_IMAGE_SUFFIXES)), key=lambda i: i.name
    )


def _sklearn_files() -> list[Traversable]:
    folder = files("sklearn") / "datasets" / "images"
    return [folder / "china.jpg", folder / "flower.jpg"]


def sample_files(split: Split) -> list[Traversable]:
    """The image files of one split, in a fixed order (calibration must not depend on directory order)."""
    skimage_files = _skimage_files()
    if split == "calibration":
        return [item for index, item in enumerate(skimage_files) if index % 3 != 2]
    return [item for index, item in enumerate(skimage_files) if index % 3 == 2] + _sklearn_files()


def sample_tensors(manifest: ModelManifest, split: Split) -> Iterator[npt.NDArray[np.float32]]:
    """Each image of the split as a (1, 3, S, S) tensor, through the preprocessing the model's users run."""
    for item in sample_files(split):
        with item.open("rb") as stream, Image.open(stream) as image:
            yield to_tensor(image, manifest)[None]
