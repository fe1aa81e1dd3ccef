"""Whitening fitted on a corpus (``model.projection``): the maths on synthetic vectors, then the graph.

The synthetic corpus is built so that raw cosine ranks by a nuisance: each label is a small offset
along its own direction, while a large random offset along shared directions (pose, light) varies from
image to image. Learned whitening must find the label directions; PCA-whitening must whiten.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest

from model.architectures import MOBILENET_V2
from model.build import build, synthetic_source
from model.errors import ProjectionFitError
from model.projection import Whitening, WhiteningSettings, fit_whitening, whitened_model
from simsearch.embedder import OnnxEmbedder
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits
from tests.eval_datasets import pattern_jpeg

WIDTH, LABELS, PER_LABEL = 64, 8, 30
LIMITS = ImageLimits(max_bytes=1 << 24, max_pixels=1 << 24)


def unit(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def nuisance_corpus(seed: int) -> tuple[npt.NDArray[np.float64], list[str]]:
    """Labels differ by 0.3 along their own axis; images differ by N(0, 1) along 8 shared axes."""
    rng = np.random.default_rng(seed)
    label_axes = np.eye(WIDTH)[:LABELS]
    nuisance_axes = np.eye(WIDTH)[LABELS : 2 * LABELS]
    rows, labels = [], []
    for label in range(LABELS):
        for _ in range(PER_LABEL):
            nuisance = rng.normal(size=LABELS) @ nuisance_axes
            rows.append(1.0 + 0.3 * label_axes[label] + nuisance + 0.02 * rng.normal(size=WIDTH))
            labels.append(f"person-{label}")
    return unit(np.array(rows)), labels


def hit_at_1(
    queries: npt.NDArray[np.floating],
    query_labels: list[str],
    corpus: npt.NDArray[np.floating],
    labels: list[str],
) -> float:
    nearest = (queries @ corpus.T).argmax(axis=1)
    return float(np.mean([labels[n] == q for n, q in zip(nearest, query_labels, strict=True)]))


def test_learned_whitening_ranks_by_label_where_raw_cosine_ranks_by_nuisance() -> None:
    corpus, labels = nuisance_corpus(seed=0)
    queries, query_labels = nuisance_corpus(seed=1)  # other images of the same labels, never fitted on
    fitted = fit_whitening(corpus, method="learned", dims=16, shrinkage=0.1, labels=labels)
    assert (fitted.images, fitted.labels, fitted.dims) == (LABELS * PER_LABEL, LABELS, 16)

    raw = hit_at_1(queries, query_labels, corpus, labels)
    whitened = hit_at_1(fitted.apply(queries), query_labels, fitted.apply(corpus), labels)
    assert raw < 0.5
    assert whitened > 0.95


def test_pca_whitening_without_shrinkage_gives_the_corpus_unit_variance_on_every_kept_axis() -> None:
    corpus, _ = nuisance_corpus(seed=0)
    fitted = fit_whitening(corpus, method="pca", dims=12, shrinkage=0.0)
    projected = (corpus.astype(np.float32) - fitted.mean) @ fitted.matrix
    covariance = np.cov(projected, rowvar=False, bias=True)
    np.testing.assert_allclose(covariance, np.eye(12), atol=1e-3)
    assert fitted.labels == 0


def test_pca_whitening_ignores_labels_and_a_refit_maps_identically() -> None:
    corpus, labels = nuisance_corpus(seed=0)
    first = fit_whitening(corpus, method="pca", dims=12, shrinkage=1.0)
    second = fit_whitening(corpus, method="pca", dims=12, shrinkage=1.0, labels=labels)
    assert first.fingerprint == second.fingerprint
    np.testing.assert_array_equal(first.apply(corpus[:5]), second.apply(corpus[:5]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "pca", "dims": 0, "shrinkage": 1.0}, "0 dimensions cannot be fitted"),
        ({"method": "pca", "dims": 240, "shrinkage": 1.0}, "use 1 to 64"),
        ({"method": "pca", "dims": 8, "shrinkage": -0.5}, "shrinkage is -0.5"),
        ({"method": "learned", "dims": 8, "shrinkage": 0.1}, "labels for 240 vectors"),
        ({"method": "learned", "dims": 8, "shrinkage": 0.1, "labels": [None] * 240}, "needs a label with"),
        (
            {"method": "learned", "dims": 8, "shrinkage": 0.1, "labels": [str(n) for n in range(240)]},
            "needs a label with",
        ),
    ],
)
def test_a_fit_the_corpus_cannot_support_is_a_typed_error(kwargs: dict[str, object], message: str) -> None:
    corpus, _ = nuisance_corpus(seed=0)
    with pytest.raises(ProjectionFitError, match=message) as raised:
        fit_whitening(corpus, **kwargs)  # type: ignore[arg-type]
    assert raised.value.code == "projection_fit"


def test_pca_whitening_without_shrinkage_refuses_directions_the_corpus_does_not_span() -> None:
    corpus, _ = nuisance_corpus(seed=0)
    repeated = np.repeat(corpus[:3], 10, axis=0)  # 30 vectors, 3 distinct: a plane around their mean
    with pytest.raises(ProjectionFitError, match="spans only about 2 dimensions, fewer than the 5 asked"):
        fit_whitening(repeated, method="pca", dims=5, shrinkage=0.0)
    shrunk = fit_whitening(repeated, method="pca", dims=5, shrinkage=1.0)  # shrinkage keeps it finite
    assert np.isfinite(shrunk.matrix).all()


def test_learned_whitening_without_shrinkage_needs_labels_that_vary_in_every_direction() -> None:
    corpus, labels = nuisance_corpus(seed=0)  # 240 images of 64 dimensions: enough to vary in all
    assert np.isfinite(
        fit_whitening(corpus, method="learned", dims=8, shrinkage=0.0, labels=labels).matrix
    ).all()
    few, few_labels = corpus[::8], labels[::8]  # 30 images: their label deviations span < 64 dimensions
    with pytest.raises(ProjectionFitError, match="give a shrinkage above 0"):
        fit_whitening(few, method="learned", dims=8, shrinkage=0.0, labels=few_labels)
    assert np.isfinite(
        fit_whitening(few, method="learned", dims=8, shrinkage=0.1, labels=few_labels).matrix
    ).all()


def test_more_dimensions_than_the_corpus_has_images_are_refused() -> None:
    corpus, labels = nuisance_corpus(seed=0)
    with pytest.raises(ProjectionFitError, match="use 1 to 9"):
        fit_whitening(corpus[:10], method="learned", dims=32, shrinkage=0.1, labels=labels[:10])


def test_each_method_has_its_chosen_settings_and_either_can_be_overridden() -> None:
    assert str(WhiteningSettings.defaults("learned")) == "learned 384 d, shrinkage 0.15"
    assert str(WhiteningSettings.defaults("pca")) == "pca 256 d, shrinkage 1"
    assert WhiteningSettings.defaults("learned", dims=64) == WhiteningSettings(
        method="learned", dims=64, shrinkage=0.15
    )
    assert WhiteningSettings.defaults("pca", shrinkage=0.5).dims == 256


def test_unlabelled_images_count_for_the_axes_but_not_for_the_labels() -> None:
    corpus, labels = nuisance_corpus(seed=0)
    partly = [label if n % 2 else None for n, label in enumerate(labels)]
    fitted = fit_whitening(corpus, method="learned", dims=8, shrinkage=0.1, labels=partly)
    assert (fitted.images, fitted.labels) == (len(corpus), LABELS)


# the graph --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileNetV2 with synthetic weights: the graph is what matters here, and it needs no download."""
    out = tmp_path_factory.mktemp("mobilenet_v2")
    return build(MOBILENET_V2, synthetic_source(MOBILENET_V2), out_dir=out, int8=False).directory


@pytest.fixture(scope="module")
def corpus_vectors(model_dir: Path) -> npt.NDArray[np.float32]:
    embedder = OnnxEmbedder.load(model_dir, threads=1)
    return embedder.embed_images([pattern_jpeg(seed) for seed in range(40)], limits=LIMITS)


@pytest.fixture(scope="module")
def fitted(corpus_vectors: npt.NDArray[np.float32]) -> Whitening:
    labels = [f"group-{n % 4}" for n in range(len(corpus_vectors))]
    return fit_whitening(corpus_vectors, method="learned", dims=24, shrinkage=0.1, labels=labels)


@pytest.mark.slow
def test_the_whitened_model_embeds_as_the_base_model_followed_by_the_map(
    model_dir: Path, fitted: Whitening, tmp_path: Path
) -> None:
    manifest = whitened_model(model_dir, fitted, out_dir=tmp_path / "whitened")
    base = ModelManifest.load(model_dir)
    assert manifest.model_id == f"{base.model_id}-lw24-{fitted.fingerprint[:8]}"
    assert (manifest.embedding_dim, manifest.projection, manifest.base_model_id) == (
        24,
        "learned-whitening",
        base.model_id,
    )
    assert (manifest.projection_images, manifest.projection_labels, manifest.projection_shrinkage) == (
        40,
        4,
        0.1,
    )
    assert ModelManifest.load(tmp_path / "whitened") == manifest

    whitened = OnnxEmbedder.load(tmp_path / "whitened", threads=1)
    vectors = whitened.embed_images([pattern_jpeg(seed) for seed in range(100, 106)], limits=LIMITS)
    base_vectors = OnnxEmbedder.load(model_dir, threads=1).embed_images(
        [pattern_jpeg(seed) for seed in range(100, 106)], limits=LIMITS
    )
    assert vectors.shape == (6, 24)
    np.testing.assert_allclose(vectors, fitted.apply(base_vectors), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_the_same_fit_writes_the_same_bytes_and_a_whitened_model_is_not_whitened_again(
    model_dir: Path, fitted: Whitening, tmp_path: Path
) -> None:
    first = whitened_model(model_dir, fitted, out_dir=tmp_path / "one")
    second = whitened_model(model_dir, fitted, out_dir=tmp_path / "two")
    assert (tmp_path / "one" / "model.onnx").read_bytes() == (tmp_path / "two" / "model.onnx").read_bytes()
    assert first.onnx_sha256 == second.onnx_sha256
    onnx.checker.check_model(onnx.load(tmp_path / "one" / "model.onnx"), full_check=True)
    with pytest.raises(ProjectionFitError, match="already whitened"):
        whitened_model(tmp_path / "one", fitted, out_dir=tmp_path / "three")


@pytest.mark.slow
def test_a_whitening_fitted_for_another_width_is_refused(model_dir: Path, tmp_path: Path) -> None:
    corpus, labels = nuisance_corpus(seed=0)
    other = fit_whitening(corpus, method="learned", dims=8, shrinkage=0.1, labels=labels)
    with pytest.raises(ProjectionFitError, match="takes 64-d vectors"):
        whitened_model(model_dir, other, out_dir=tmp_path / "w")
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_a_whitened_model_does_not_inherit_its_base_models_near_duplicate_threshold(
    model_dir: Path, fitted: Whitening, tmp_path: Path
) -> None:
    """Whitening moves every score (0.954 for MobileNetV2 is 0.707 whitened): the base's measured
    threshold would be wrong for it, so the whitened model has none until it is measured."""
    recorded = tmp_path / "recorded"
    shutil.copytree(model_dir, recorded)
    replace(ModelManifest.load(recorded), near_duplicate_threshold=0.954).save(recorded)
    assert whitened_model(recorded, fitted, out_dir=tmp_path / "whitened").near_duplicate_threshold is None
