"""The second, unrelated dataset: scikit-learn's digits (shipped in the wheel, so every clone has it).

Learned whitening is kept only if it does not hurt outside the faces it was tuned on: fitted on the
indexed digits, it must score at least the baseline's hit@1, hit@10 and mAP@10 on the same split.
Reports land in ``build/eval/digits`` and ``build/eval/digits-whitened`` (``tests/conftest.py``
prints the latter's table).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluation import digits
from evaluation.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "eval" / "digits"
WHITENED = ROOT / "build" / "eval" / "digits-whitened"


def scores(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return loaded["duplicates_excluded"]  # type: ignore[no-any-return]


def test_learned_whitening_does_not_hurt_on_the_digits(model_dir: Path, tmp_path: Path) -> None:
    dataset = digits.build(tmp_path / "digits")
    common = [str(dataset), "--model-dir", str(model_dir)]
    assert main([*common, "--out", str(OUT), "--variant", "mobilenet_v2"]) == 0
    after = [
        "--whitening",
        "learned",
        "--variant",
        "learned whitening",
        "--baseline",
        str(OUT / "metrics.json"),
    ]
    assert main([*common, "--out", str(WHITENED), *after]) == 0

    before, whitened = scores(OUT), scores(WHITENED)
    assert whitened["queries"] == before["queries"] == 359
    for k in ("1", "10"):
        assert whitened["hit_at"][k] >= before["hit_at"][k]
    assert whitened["map_at_10"] >= before["map_at_10"]


def test_the_digits_are_ten_folders_of_the_1797_scans(tmp_path: Path) -> None:
    dataset = digits.build(tmp_path / "digits")
    folders = sorted(path.name for path in dataset.iterdir())
    assert folders == [str(n) for n in range(10)]
    assert sum(1 for _ in dataset.rglob("*.png")) == 1797
    again = digits.build(tmp_path / "again")
    assert (again / "3" / "0003.png").read_bytes() == (dataset / "3" / "0003.png").read_bytes()
