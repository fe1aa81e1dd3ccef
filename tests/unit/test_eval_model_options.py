"""The retrieval options of the converter: GeM pooling, and the names that keep variants apart.

The options are checked for the property they promise and for their names (a variant's vectors never
share an index with another's); what needs real weights (Lite0 classifying the sample photographs, a
mirrored photo embedding like the original under ``hflip``) is in
``tests/integration/test_pretrained_weights.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model.architectures import MOBILENET_V2
from model.build import build, model_id, synthetic_source
from simsearch.manifest import ModelManifest

pytestmark = pytest.mark.slow


def test_gem_pooling_computes_the_generalised_mean_of_the_trunk_features(tmp_path: Path) -> None:
    built = build(
        MOBILENET_V2, synthetic_source(MOBILENET_V2), out_dir=tmp_path / "g", int8=False, pooling="gem"
    )
    assert (built.manifest.pooling, built.manifest.model_id) == ("gem", "mobilenet_v2-synthetic-c1-gem")
    graph = onnx.load(built.directory / built.manifest.onnx_file)
    last_conv = [node.output[0] for node in graph.graph.node if node.op_type == "Clip"][
        -2
    ]  # before gem.clamp
    graph.graph.output.append(onnx.helper.make_tensor_value_info(last_conv, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    embedding, trunk = session.run(["embedding", last_conv], {"input": batch})
    gem = np.mean(np.maximum(trunk, 1e-6) ** 3, axis=(2, 3)) ** (1 / 3)
    np.testing.assert_allclose(embedding, gem / np.linalg.norm(gem, axis=1, keepdims=True), atol=1e-5)


def test_every_option_gives_its_own_model_id() -> None:
    ids = {
        model_id(MOBILENET_V2, "IMAGENET1K_V1", int8=False, pooling=pooling, tta=tta)
        for pooling in ("avg", "gem")
        for tta in ("none", "hflip")
    }
    assert ids == {
        "mobilenet_v2-imagenet1k_v1-c1",
        "mobilenet_v2-imagenet1k_v1-c1-gem",
        "mobilenet_v2-imagenet1k_v1-c1-hflip",
        "mobilenet_v2-imagenet1k_v1-c1-gem-hflip",
    }


def test_a_manifest_written_before_the_options_existed_reads_as_avg_without_augmentation(
    tmp_path: Path,
) -> None:
    built = build(MOBILENET_V2, synthetic_source(MOBILENET_V2), out_dir=tmp_path / "m", int8=False)
    raw = (built.directory / "manifest.json").read_text(encoding="utf-8")
    legacy = raw.replace('  "test_time_augmentation": "none",\n', "")
    assert legacy != raw
    (built.directory / "manifest.json").write_text(legacy, encoding="utf-8")
    manifest = ModelManifest.load(built.directory)
    assert (manifest.pooling, manifest.test_time_augmentation) == ("avg", "none")
