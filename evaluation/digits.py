"""``python -m evaluation.digits OUT``: scikit-learn's handwritten digits as a folder-per-class dataset.

The second, unrelated dataset a retrieval change is checked on (the celebrity faces being the first):
1,797 scans of the digits 0-9 that ship inside scikit-learn (no download), as dark-on-light 64x64 PNGs.
Unlike the sanity views (``evaluation.sanity``), ImageNet features do not saturate it, so a change
that hurts shows: MobileNetV2 scores hit@1 about 0.91 and mAP@10 about 0.79 here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 64
_INK_LEVELS = 16  # the scans' grey levels run 0..16


def build(out: Path) -> Path:
    """Write ``out/<digit>/<n>.png`` for each of the 1,797 scans; the same bytes on every run."""
    from sklearn.datasets import load_digits  # scikit-learn imports slowly; only this command needs it

    digits = load_digits()
    for number, (scan, digit) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = out / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        paper = (255 - scan * (255 / _INK_LEVELS)).astype(np.uint8)
        image = Image.fromarray(paper).resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        image.save(folder / f"{number:04d}.png", optimize=False)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.digits", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write <digit>/<n>.png into")
    args = parser.parse_args(argv)
    build(args.out)
    print(f"10 classes, 1797 images in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
