"""One typed configuration object, read once; every problem is reported together.

Standard library only: the CDK app imports this module to build the functions' environment with
``Settings.to_env()``, so infrastructure and runtime cannot drift apart on a variable name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Literal, get_args

from simsearch.errors import ConfigError

ENV_PREFIX = "SIMSEARCH_"

Engine = Literal["faiss", "lucene"]
SpaceType = Literal["innerproduct", "cosinesimil"]
AuthMode = Literal["none", "basic", "sigv4"]


def _var(name: str) -> str:
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the handlers, local mode and the CLI need to know about their environment.

    Defaults are the production defaults; ``from_env`` requires only the fields without one.
    """

    model_dir: Path
    images_bucket: str
    # Where other functions find this model (s3://bucket/prefix/ in AWS); empty: ``model_dir`` itself
    model_uri: str = ""
    model_cache_dir: Path = Path("/tmp/simsearch-models")  # models fetched from model_uri (Lambda's /tmp)
    opensearch_url: str = ""  # empty: use the embedded index at ``embedded_index_path``
    embedded_index_path: Path = Path(".cache/index/simsearch.sqlite")
    opensearch_auth: AuthMode = "sigv4"
    opensearch_service: Literal["es", "aoss"] = "es"
    # Each OpenSearch request waits at most this long, and is sent at most 1 + retries times (on a
    # timeout, 502, 503 or 504): the query function's share of its timeout is set by infra/config.py.
    opensearch_timeout_s: float = 10.0
    opensearch_retries: int = 2
    aws_region: str = "us-east-1"
    index_prefix: str = "images"
    engine: Engine = "faiss"
    space_type: SpaceType = "innerproduct"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 128
    hnsw_ef_search: int = 256  # recall@10 >= 0.99 on the hard benchmark set (make bench-index)
    query_upload_prefix: str = "_queries/"
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    presign_ttl_seconds: int = 900
    ort_threads: int = 0  # 0: derive from the Lambda memory size or the machine
    cors_origin: str = "*"  # the origin browsers may call the query API from (the CDK context `cors_origin`)
    # Near duplicates: other content whose cosine similarity to an image is at least this, for a model
    # whose manifest records no threshold of its own (simsearch.duplicates says what counts as one).
    # Measured for MobileNetV2 by `make near-duplicates` (docs/evaluation.md): the lowest threshold that
    # keeps precision >= 0.99. It depends on the model: `--record` writes another model's into its
    # manifest, and the API and the CLI use the serving model's.
    near_duplicate_threshold: float = 0.954
    # The picture check that decides near duplicates by default (simsearch.duplicates.PictureCheck):
    # candidates at least `near_duplicate_gate` similar (for a model whose manifest records no gate) are
    # near duplicates when their thumbnails correlate at least `picture_match_threshold`; a pair whose
    # images cannot be read falls back to `near_duplicate_threshold`. Measured for MobileNetV2 by
    # `make near-duplicates` (docs/evaluation.md): the gate keeps 99.5 % of the development half's
    # duplicate pairs; the correlation is the balanced choice there (precision and recall >= 0.99).
    near_duplicate_gate: float = 0.875
    picture_match_threshold: float = 0.959

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Build from ``SIMSEARCH_*`` variables; raise one ``ConfigError`` naming every problem."""
        problems: list[str] = []
        values: dict[str, object] = {}
        for field in fields(cls):
            name = _var(field.name)
            if name not in env:
                if field.default is MISSING:
                    problems.append(f"{name} is missing")
                continue
            try:
                values[field.name] = _parse(field.name, field.type, env[name])
            except ValueError as error:
                problems.append(f"{name}={env[name]!r}: {error}")
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems))
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The variable that sets ``field_name``, for the rare value needed before ``from_env`` can run."""
        return _var(field_name)

    def to_env(self) -> dict[str, str]:
        """The environment that ``from_env`` reads back into an equal object."""
        return {_var(f.name): str(getattr(self, f.name)) for f in fields(self)}


_LITERALS: dict[str, tuple[str, ...]] = {
    "engine": get_args(Engine),
    "space_type": get_args(SpaceType),
    "opensearch_auth": get_args(AuthMode),
    "opensearch_service": ("es", "aoss"),
}


def _parse(name: str, annotation: object, raw: str) -> object:
    if name in _LITERALS:
        if raw not in _LITERALS[name]:
            raise ValueError(f"must be one of {list(_LITERALS[name])}")
        return raw
    if annotation in ("int", int):
        return int(raw)
    if annotation in ("float", float):
        return float(raw)
    if annotation in ("Path", Path):
        return Path(raw)
    return raw
