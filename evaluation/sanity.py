"""``python -m evaluation.sanity OUT``: a small folder-per-class dataset built offline, unrelated to faces.

Each class is one photograph shipped inside scikit-image or scikit-learn (so no download), and its
images are different views of it: random crops of a quarter to two thirds of the picture, mirrored
or not, slightly rotated, with colour, blur and JPEG quality varied. Retrieving a view's siblings
tests what a retrieval change does outside the celebrity faces; the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import io
import random
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage.data", "astronaut.png"),
    "brick": ("skimage.data", "brick.png"),
    "camera": ("skimage.data", "camera.png"),
    "cat": ("skimage.data", "chelsea.png"),
    "china": ("sklearn.datasets.images", "china.jpg"),
    "coffee": ("skimage.data", "coffee.png"),
    "coins": ("skimage.data", "coins.png"),
    "flower": ("sklearn.datasets.images", "flower.jpg"),
    "grass": ("skimage.data", "grass.png"),
    "gravel": ("skimage.data", "gravel.png"),
    "hubble": ("skimage.data", "hubble_deep_field.jpg"),
    "ihc": ("skimage.data", "ihc.png"),
    "moon": ("skimage.data", "moon.png"),
    "motorcycle": ("skimage.data", "motorcycle_left.png"),
    "page": ("skimage.data", "page.png"),
    "retina": ("skimage.data", "retina.jpg"),
    "rocket": ("skimage.data", "rocket.jpg"),
    "text": ("skimage.data", "text.png"),
}
"""Class name → (package, file) of its source photograph."""

VIEWS_PER_CLASS = 20
MAX_SIDE = 320


def build(out: Path, *, seed: int = 0, views: int = VIEWS_PER_CLASS) -> Path:
    """Write ``out/<class>/<n>.jpg`` for every source; returns ``out``."""
    for label, (package, name) in sorted(SOURCES.items()):
        source = Image.open(io.BytesIO((files(package) / name).read_bytes())).convert("RGB")
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        generator = random.Random(f"{seed}:{label}")
        for number in range(views):
            (folder / f"{number:03d}.jpg").write_bytes(_view(source, generator))
    return out


def _view(source: Image.Image, generator: random.Random) -> bytes:
    """One random view: crop, mirror, rotate, recolour, blur, shrink, re-encode."""
    width, height = source.size
    share = generator.uniform(0.25, 0.66) ** 0.5  # side of a crop covering 25-66 % of the area
    crop_w, crop_h = int(width * share), int(height * share)
    left, top = generator.randint(0, width - crop_w), generator.randint(0, height - crop_h)
    image = source.crop((left, top, left + crop_w, top + crop_h))
    if generator.random() < 0.5:
        image = ImageOps.mirror(image)
    image = image.rotate(generator.uniform(-12, 12), resample=Image.Resampling.BILINEAR, expand=False)
    image = ImageEnhance.Color(image).enhance(generator.uniform(0.6, 1.4))
    image = ImageEnhance.Brightness(image).enhance(generator.uniform(0.75, 1.25))
    image = image.filter(ImageFilter.GaussianBlur(generator.uniform(0, 1.2)))
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=generator.randint(60, 95))
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.sanity", description=__doc__)
    parser.add_argument("out", type=Path, help="folder to write <class>/<n>.jpg into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(args.out, seed=args.seed)
    print(f"{len(SOURCES)} classes x {VIEWS_PER_CLASS} views in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
