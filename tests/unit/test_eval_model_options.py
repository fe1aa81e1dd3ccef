"""The retrieval options of the converter: EfficientNet-Lite0, GeM pooling and flip test-time augmentation.

Lite0 is checked the way a conversion can be trusted: its own ImageNet classifier, applied to the
pooled features of our graph, names what the two sample photographs show. The options are checked
for the property they promise (a mirrored image embeds like the original under ``hflip``) and for
their names (a variant's vectors never share an index with another's).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image, ImageOps

from model.architectures import EFFICIENTNET_LITE0, MOBILENET_V2
from model.build import build, checkpoint_source, model_id, synthetic_source
from model.images import photograph
from simsearch.embedder import OnnxEmbedder
from simsearch.manifest import ModelManifest
from simsearch.preprocess import to_tensor

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
DAISY, PALACE = 985, 698  # ImageNet class indices


def photo(name: str) -> Image.Image:
    return Image.open(io.BytesIO(photograph(name))).convert("RGB")


def test_efficientnet_lite0_features_classify_the_sample_photos_with_its_own_head(tmp_path: Path) -> None:
    source = checkpoint_source(EFFICIENTNET_LITE0, tag=None, path=None, cache_dir=ROOT / ".cache")
    built = build(EFFICIENTNET_LITE0, source, out_dir=tmp_path / "lite0", int8=False)
    assert built.manifest.model_id == "efficientnet_lite0-imagenet-c1"
    assert built.manifest.mean == pytest.approx((127 / 255,) * 3)
    graph = onnx.load(built.directory / built.manifest.onnx_file)
    graph.graph.output.append(onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.stack([to_tensor(photo(n), built.manifest) for n in ("flower.jpg", "china.jpg")])
    (features,) = session.run(["features"], {"input": batch})
    logits = features @ source.weights["_fc.weight"].T + source.weights["_fc.bias"]
    assert logits.argmax(axis=1).tolist() == [DAISY, PALACE]


def test_with_hflip_a_mirrored_photo_embeds_like_the_photo(tmp_path: Path) -> None:
    source = checkpoint_source(MOBILENET_V2, tag=None, path=None, cache_dir=ROOT / ".cache")
    plain = OnnxEmbedder.load(
        build(MOBILENET_V2, source, out_dir=tmp_path / "p", int8=False).directory, threads=1
    )
    flip = build(MOBILENET_V2, source, out_dir=tmp_path / "f", int8=False, tta="hflip")
    assert flip.manifest.test_time_augmentation == "hflip"
    embedder = OnnxEmbedder.load(flip.directory, threads=1)
    china = photo("china.jpg")
    original, mirrored = embedder.embed([china, ImageOps.mirror(china)])
    plain_original, plain_mirrored = plain.embed([china, ImageOps.mirror(china)])
    assert float(original @ mirrored) > 0.995  # measured 0.997; resampling is not exactly symmetric
    assert float(original @ mirrored) > float(plain_original @ plain_mirrored) + 0.01  # plain: 0.979


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
