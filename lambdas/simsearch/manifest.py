"""The model manifest: the single description of an embedding model that everything downstream reads.

``model/`` writes it beside each ``model.onnx``; the embedder, preprocessing, index naming, the CDK app
and the evaluation read it, so nothing hard-codes an embedding dimension or an input size.
Standard library only (the CDK app reads it at synth time).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from simsearch.errors import ConfigError

MANIFEST_FILE = "manifest.json"

Quantization = Literal["none", "int8-qdq"]
Projection = Literal["none", "pca-whitening", "learned-whitening"]


@dataclass(frozen=True, kw_only=True)
class ModelManifest:
    """What a model computes and how its input must be prepared.

    ``mean``/``std`` apply to pixels scaled to [0, 1] in ``color_order``; the output is one
    L2-normalised ``embedding_dim`` vector per image.
    """

    model_id: str  # "<arch>-<weights tag>-c<converter version>", also part of the index name
    arch: str
    weights: str
    converter_version: str
    embedding_dim: int
    input_size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    input_name: str = "input"
    output_name: str = "embedding"
    opset: int
    pooling: str = "avg"  # "avg", or "gem" (generalised mean, p = 3)
    test_time_augmentation: Literal["none", "hflip"] = "none"  # "hflip": the image and its mirror, summed
    quantization: Quantization = "none"
    # A whitening fitted on an indexed corpus and folded into the graph after the L2 head (model.projection):
    # ``embedding_dim`` is then its output size, and ``base_model_id`` names the model it was fitted for.
    projection: Projection = "none"
    projection_shrinkage: float = 0.0
    projection_images: int = 0  # how many corpus images the fit saw
    projection_labels: int = 0  # how many distinct labels (learned whitening only)
    base_model_id: str = ""
    # The similarity above which two images are the same picture for this model, measured by the
    # near-duplicate benchmark (docs/evaluation.md); None: not measured, Settings' default applies.
    near_duplicate_threshold: float | None = None
    # The similarity a candidate needs before the picture check compares its pixels with the image's
    # (simsearch.duplicates.PictureCheck): measured to let nearly every duplicate through; None: not
    # measured, Settings' default applies.
    near_duplicate_gate: float | None = None
    onnx_file: str = "model.onnx"
    onnx_sha256: str
    weights_file: str
    weights_sha256: str

    def near_rule(self, *, threshold: float, gate: float) -> tuple[float, float]:
        """This model's measured near-duplicate threshold and picture-check gate, each where it was
        measured, else the given default (the deployment's settings)."""
        return (
            threshold if self.near_duplicate_threshold is None else self.near_duplicate_threshold,
            gate if self.near_duplicate_gate is None else self.near_duplicate_gate,
        )

    @classmethod
    def load(cls, model_dir: Path) -> ModelManifest:
        """Read ``model_dir/manifest.json``; a missing or malformed file is a ``ConfigError``."""
        path = model_dir / MANIFEST_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw["mean"], raw["std"] = tuple(raw["mean"]), tuple(raw["std"])
            return cls(**raw)
        except FileNotFoundError as error:
            raise ConfigError(f"no model manifest at {path}; build one with `make model`") from error
        except (ValueError, TypeError, KeyError) as error:
            raise ConfigError(f"model manifest {path} is malformed: {error}") from error

    def save(self, model_dir: Path) -> Path:
        """Write the manifest with sorted keys, so the same model always gives the same bytes."""
        path = model_dir / MANIFEST_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path


def manifest_of(embedder: object) -> ModelManifest | None:
    """The manifest an embedder carries (``OnnxEmbedder`` does), or None for one that says nothing of its
    model (a test's stand-in): what depends on the model's preprocessing or scores falls back then."""
    manifest = getattr(embedder, "manifest", None)
    return manifest if isinstance(manifest, ModelManifest) else None
