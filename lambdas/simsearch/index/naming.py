"""Index and alias names, in one place: the adapters, the CDK index bootstrap and the tests share them.

A model's vectors live in concrete indexes ``<prefix>-<model_id>-v<N>``, reached through the alias
``<prefix>-<model_id>``. Which of a deployment's indexes answer queries and which take writes is kept
in three more aliases (``pointer_name``): ``serving`` (one index), ``writing`` (one, or two during a
re-index) and ``previous`` (what served before the last switch, for a rollback).
Standard library only (the CDK app imports it at synth time).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from simsearch.errors import ConfigError

# OpenSearch index names: lowercase, no \ / * ? " < > | space , # :, not starting with - _ +, <= 255 bytes.
_NAME_PART = re.compile(r"[a-z0-9][a-z0-9._-]*")
_MAX_NAME_BYTES = 255
_VERSION_SUFFIX_BYTES = len("-v") + 10  # room for any version number that fits in 32 bits


def alias_name(prefix: str, model_id: str) -> str:
    """The alias every reader and writer uses for ``model_id``'s vectors.

    Raises:
        ConfigError: the prefix or model id would make an invalid or too long OpenSearch index name.
    """
    for label, part in (("index prefix", prefix), ("model id", model_id)):
        if not _NAME_PART.fullmatch(part):
            raise ConfigError(
                f"{label} {part!r} cannot be part of an index name: use lowercase letters, digits, "
                "'.', '_' and '-', starting with a letter or digit"
            )
    alias = f"{prefix}-{model_id}"
    if len(alias.encode()) + _VERSION_SUFFIX_BYTES > _MAX_NAME_BYTES:
        raise ConfigError(f"index name {alias!r} is too long: at most {_MAX_NAME_BYTES} bytes with '-v<N>'")
    return alias


def version_name(alias: str, version: int) -> str:
    """The concrete index behind ``alias`` at ``version`` (1, 2, ...)."""
    if version < 1:
        raise ConfigError(f"index version is {version}; versions start at 1")
    return f"{alias}-v{version}"


def versions_pattern(alias: str) -> str:
    """Every concrete index that may stand behind ``alias``: what alias look-ups are asked of.

    Under fine-grained access control a role allowed only ``<prefix>-*`` is refused an alias look-up
    that names no index (``GET /_alias/<alias>`` resolves against every index in the cluster).
    """
    return f"{alias}-v*"


Pointer = Literal["serving", "writing", "previous"]
POINTERS: tuple[Pointer, ...] = get_args(Pointer)


def pointer_name(prefix: str, pointer: Pointer) -> str:
    """The alias that says which of ``prefix``'s indexes serve, take writes, or served before."""
    return alias_name(prefix, pointer)


def failures_name(prefix: str) -> str:
    """The small index (OpenSearch) that records images that could not be indexed."""
    return alias_name(prefix, "failures")
