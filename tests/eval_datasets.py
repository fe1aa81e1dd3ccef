"""Tiny folder-per-class datasets built in ``tmp_path`` for the evaluation tests (no ``../shared`` needed)."""

from __future__ import annotations

from pathlib import Path

from tests.image_factories import block_jpeg


def pattern_jpeg(seed: int, *, size: tuple[int, int] = (96, 80)) -> bytes:
    """A JPEG of coloured blocks, different for every seed."""
    return block_jpeg(seed, blocks=(5, 6), size=size)


def folder_dataset(root: Path, counts: dict[str, int]) -> Path:
    """``root/<label>/<n>.jpg`` with ``counts[label]`` distinct images per class."""
    seed = 0
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            seed += 1
            (root / label / f"{number:02d}.jpg").write_bytes(pattern_jpeg(seed))
    return root
