"""Whitening fitted on an indexed corpus, folded into the embedding model after its L2 head.

Off-the-shelf ImageNet features spend most of their variance on what ImageNet tells apart, not on what
a given corpus's labels do. A linear map fitted on the corpus re-weights the directions:

- ``pca``: PCA-whitening (Jégou & Chum, ECCV 2012). Centre, rotate onto the principal axes and divide
  each by ``sqrt(variance + shrinkage * mean variance)``: frequent directions stop drowning rare ones,
  and the shrinkage keeps low-variance noise from being blown up.
- ``learned``: learned whitening (Radenović et al., TPAMI 2018), with images sharing a label as the
  matching pairs. Whiten by the within-label covariance (shrunk towards ``shrinkage`` times its mean
  eigenvalue), then keep the ``dims`` principal axes of the whitened corpus: directions along which
  images of one label differ are damped, those separating labels are kept. Labels come from where the
  ingestion takes them (``simsearch.labels``); only the corpus's own labels are used, never a query's.

The map is appended to the ONNX graph (subtract, multiply, L2-normalise), so the ingest and query
functions apply exactly the same transform with no code of their own, and the model id names the fit
(``<base>-lw256-<sha8>``): its vectors live in an index of their own, and refitting means re-indexing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from model.errors import ProjectionFitError
from simsearch.manifest import ModelManifest, Projection

Method = Literal["pca", "learned"]
PROJECTIONS: dict[Method, Projection] = {"pca": "pca-whitening", "learned": "learned-whitening"}
_ID_TAGS: dict[Method, str] = {"pca": "pcaw", "learned": "lw"}
_BASE_OUTPUT = "embedding.unwhitened"


@dataclass(frozen=True, kw_only=True)
class WhiteningSettings:
    """Which whitening to fit: the method, its output dimensions and its shrinkage."""

    method: Method
    dims: int
    shrinkage: float

    @classmethod
    def defaults(
        cls, method: Method, *, dims: int | None = None, shrinkage: float | None = None
    ) -> WhiteningSettings:
        """``method``'s chosen settings (``DEFAULTS``), overridden by ``dims`` or ``shrinkage`` if given."""
        chosen = DEFAULTS[method]
        return replace(
            chosen,
            dims=chosen.dims if dims is None else dims,
            shrinkage=chosen.shrinkage if shrinkage is None else shrinkage,
        )

    def __str__(self) -> str:
        return f"{self.method} {self.dims} d, shrinkage {self.shrinkage:g}"

    def fit(self, vectors: npt.ArrayLike, *, labels: Sequence[str | None] = ()) -> Whitening:
        """``fit_whitening`` with these settings."""
        return fit_whitening(
            vectors, method=self.method, dims=self.dims, shrinkage=self.shrinkage, labels=labels
        )


DEFAULTS: dict[Method, WhiteningSettings] = {
    "pca": WhiteningSettings(method="pca", dims=256, shrinkage=1.0),
    "learned": WhiteningSettings(method="learned", dims=384, shrinkage=0.15),
}
"""Each method's best on the celebrity faces' splits with seeds 1-4 (``python -m evaluation.sweep``);
seed 0, the split CI evaluates, was held out of the choice (docs/evaluation.md)."""

Matrix = npt.NDArray[np.float32]
_NULL_VARIANCE = 1e-10
"""Relative to the largest, a variance this small is rounding noise of the eigensolver, not a direction."""


@dataclass(frozen=True, kw_only=True)
class Whitening:
    """``x -> normalise((x - mean) @ matrix)``, and what it was fitted on."""

    method: Method
    mean: Matrix  # (input dim,)
    matrix: Matrix  # (input dim, dims)
    shrinkage: float
    images: int
    labels: int  # distinct labels the fit used (0 for pca)

    @property
    def dims(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def fingerprint(self) -> str:
        """The sha256 of the map's numbers: two fits share a model id only if they map alike."""
        digest = hashlib.sha256(self.mean.tobytes() + self.matrix.tobytes())
        return digest.hexdigest()

    def apply(self, vectors: npt.ArrayLike) -> Matrix:
        """The map in NumPy, as the appended graph computes it (same float32 operations)."""
        projected = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.matrix
        norms = np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), np.float32(1e-12))
        unit: Matrix = (projected / norms).astype(np.float32)
        return unit


def fit_whitening(
    vectors: npt.ArrayLike,
    *,
    method: Method,
    dims: int,
    shrinkage: float,
    labels: Sequence[str | None] = (),
) -> Whitening:
    """Fit ``method`` on the corpus ``vectors`` (one L2-normalised row per image).

    ``labels`` (one per row, ``None`` for an unlabelled image) are required by ``learned``; unlabelled
    images still count towards the mean and the principal axes.

    Raises:
        ProjectionFitError: too few images for ``dims``, a shrinkage below zero, or (learned) no label
            with two images, or ``labels`` not matching the rows.
    """
    corpus = np.asarray(vectors, dtype=np.float64)
    images, width = corpus.shape
    if not 1 <= dims <= min(width, images - 1):
        raise ProjectionFitError(
            f"{dims} dimensions cannot be fitted on {images} vectors of {width}: "
            f"use 1 to {min(width, images - 1)}, or index more images first"
        )
    if shrinkage < 0:
        raise ProjectionFitError(f"shrinkage is {shrinkage}; it must be at least 0")
    mean = corpus.mean(axis=0)
    centred = corpus - mean
    if method == "pca":
        variances, axes = _principal_axes(centred)
        scale = variances[:dims] + shrinkage * variances[:dims].mean()
        if scale.min() <= _NULL_VARIANCE * scale.max():
            spanned = int(np.count_nonzero(variances > _NULL_VARIANCE * variances[0]))
            raise ProjectionFitError(
                f"the corpus spans only about {spanned} dimensions, fewer than the {dims} asked: "
                "ask for fewer, or give a shrinkage above 0"
            )
        matrix, used = axes[:, :dims] / np.sqrt(scale), 0
    else:
        within, used = _within_label_covariance(corpus, labels)
        eigenvalues, eigenvectors = np.linalg.eigh(
            within + shrinkage * within.trace() / width * np.eye(width)
        )
        if eigenvalues.min() <= _NULL_VARIANCE * eigenvalues.max():
            raise ProjectionFitError(
                f"images of one label vary along fewer than all {width} dimensions, so whitening by their "
                "covariance would divide by zero: give a shrinkage above 0"
            )
        whiten = eigenvectors / np.sqrt(eigenvalues)
        _, axes = _principal_axes(centred @ whiten)
        matrix = whiten @ axes[:, :dims]
    return Whitening(
        method=method,
        mean=mean.astype(np.float32),
        matrix=np.ascontiguousarray(matrix, dtype=np.float32),
        shrinkage=float(shrinkage),
        images=images,
        labels=used,
    )


def _principal_axes(
    centred: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Variances and axes (columns) of the rows' covariance, largest first, with a deterministic sign.

    The covariance is ``width x width``: its cost grows with the corpus only linearly.
    """
    variances, axes = np.linalg.eigh(centred.T @ centred / len(centred))
    variances, axes = variances[::-1], axes[:, ::-1]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    return np.maximum(variances, 0.0), axes * signs


def _within_label_covariance(
    corpus: npt.NDArray[np.float64], labels: Sequence[str | None]
) -> tuple[npt.NDArray[np.float64], int]:
    """The covariance of each image around its label's mean, and how many labels had two images or more."""
    if len(labels) != len(corpus):
        raise ProjectionFitError(
            f"{len(labels)} labels for {len(corpus)} vectors: learned whitening needs one each"
        )
    sizes = Counter(label for label in labels if label is not None)
    groups = [label for label, size in sizes.items() if size >= 2]
    if not groups:
        raise ProjectionFitError(
            "learned whitening needs a label with at least two images; "
            "label the corpus (<label>/<file> keys or x-amz-meta-label) or use --method pca"
        )
    rows = np.asarray(labels, dtype=object)
    within = np.zeros((corpus.shape[1],) * 2)
    for label in groups:
        members = corpus[rows == label]
        deviations = members - members.mean(axis=0)
        within += deviations.T @ deviations
    return within / sum(sizes[label] for label in groups), len(groups)


def whitened_model(base_dir: Path, whitening: Whitening, *, out_dir: Path) -> ModelManifest:
    """Write ``base_dir``'s model followed by ``whitening`` into ``out_dir``; return its manifest.

    Raises:
        ProjectionFitError: the base model is already whitened, or its embeddings are not the input
            the whitening was fitted on.
    """
    # imported here: the settings and the fit need NumPy only, and the CLIs import them for their --help
    import onnx

    from model.build import write_model
    from model.graph import GraphBuilder, to_bytes

    base = ModelManifest.load(base_dir)
    if base.projection != "none":
        raise ProjectionFitError(f"{base.model_id} is already whitened; fit on its base model instead")
    if whitening.mean.shape != (base.embedding_dim,):
        raise ProjectionFitError(
            f"the whitening takes {whitening.mean.shape[0]}-d vectors; "
            f"{base.model_id} gives {base.embedding_dim}"
        )
    graph = GraphBuilder(input_name=_BASE_OUTPUT, channels=0, size=0)
    centred = graph.node(
        "Sub", [_BASE_OUTPUT, graph.constant("whiten.mean", whitening.mean)], name="whiten.centre"
    )
    projected = graph.node(
        "MatMul", [centred, graph.constant("whiten.matrix", whitening.matrix)], name="whiten.project"
    )
    output = graph.l2_normalised(projected, name="whiten.l2norm", output_name=base.output_name)
    model = to_bytes(
        graph.appended_to(onnx.load(base_dir / base.onnx_file), output=output, output_dim=whitening.dims)
    )
    manifest = replace(
        base,
        model_id=f"{base.model_id}-{_ID_TAGS[whitening.method]}{whitening.dims}-{whitening.fingerprint[:8]}",
        embedding_dim=whitening.dims,
        projection=PROJECTIONS[whitening.method],
        projection_shrinkage=whitening.shrinkage,
        projection_images=whitening.images,
        projection_labels=whitening.labels,
        base_model_id=base.model_id,
        near_duplicate_threshold=None,  # the base model's says nothing of whitened scores: measure again
        near_duplicate_gate=None,
        onnx_sha256=hashlib.sha256(model).hexdigest(),
    )
    write_model(out_dir, model, manifest)
    return manifest
