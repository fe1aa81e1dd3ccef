"""The converted models compute what torchvision computes (golden numbers: ``tests/model_golden.py``).

Synthetic weights follow a recipe, so these need no download; the real checkpoint's golden numbers are
checked in ``tests/integration/test_pretrained_weights.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from model.architectures import MOBILENET_V2, RESNET50, Architecture
from model.build import build, synthetic_source
from tests.model_golden import GOLDEN, assert_matches_golden, embed, x_fixed

SYNTHETIC = pytest.mark.parametrize(
    ("arch", "key"),
    [(RESNET50, "resnet50_synthetic"), (MOBILENET_V2, "mobilenet_v2_synthetic")],
    ids=["resnet50", "mobilenet_v2"],
)


def test_x_fixed_is_regenerated_bit_for_bit() -> None:
    assert hashlib.sha256(x_fixed().tobytes()).hexdigest() == GOLDEN["X_fixed"]["sha256_float32_le_c_order"]


@SYNTHETIC
def test_synthetic_weights_follow_the_recipe_bit_for_bit(arch: Architecture, key: str) -> None:
    source = synthetic_source(arch)

    assert len(source.weights) == GOLDEN["models"][key]["state_dict_num_entries"]
    assert source.sha256 == GOLDEN["models"][key]["state_dict_sha256"]


@SYNTHETIC
def test_synthetic_weights_match_torchvision(arch: Architecture, key: str, tmp_path: Path) -> None:
    build(arch, synthetic_source(arch), out_dir=tmp_path, int8=False)

    assert_matches_golden(embed(tmp_path, x_fixed()), GOLDEN["models"][key]["embeddings_X_fixed"])
