"""The re-index's control steps: the state machine's tasks, and what ``imgsearch reindex --stack`` asks.

``{"action": ...}`` with one of:

- ``prepare`` (``input``: the execution's input, ``{"target": ..., "prefix": ...}``, both optional):
  the index a backfill fills (the one given, else the one being built, else the serving one: a plain
  backfill of the bucket) and the key prefix to list. ``building`` says whether it is a re-index, which
  may end with a switch.
- ``gate``: may the index being built serve? (``simsearch.reindex.gate``: counts, and overlap when
  ``sample`` is given).
- ``switch`` (``force``: skip the gate), ``rollback``, ``cleanup``, ``status``.

Each answers JSON; a refused step raises, so the state machine fails with the reason and the CLI prints
it. This function's OpenSearch role may read the app's indexes, move the pointers and delete indexes,
and nothing else (``infra/reindex.py``).
"""

from __future__ import annotations

from dataclasses import asdict
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from simsearch import reindex
from simsearch.errors import ConfigError
from simsearch.index import connect_collection
from simsearch.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from simsearch.index.port import IndexCollection, IndexInfo, Pointers

logger = Logger(service="reindex")


@cache
def collection() -> IndexCollection:
    """The deployment's indexes and pointers; no model is loaded: no step here embeds anything."""
    return connect_collection(Settings.from_env())


@logger.inject_lambda_context(log_event=True)
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    action, indexes = str(event.get("action", "")), collection()
    if action == "prepare":
        return _prepare(indexes.pointers(), event.get("input") or {})
    if action == "gate":
        sample, overlap = int(event.get("sample", 0)), float(event.get("min_overlap", 0.0))
        result = reindex.gate(indexes, sample=sample, min_overlap=overlap)
        return {**asdict(result), "passed": result.passed}
    if action == "switch":
        return _pointers(reindex.switch(indexes, force=bool(event.get("force", False))))
    if action == "rollback":
        return _pointers(reindex.rollback(indexes))
    if action == "cleanup":
        return {"dropped": reindex.cleanup(indexes)}
    if action == "status":
        return reindex.status(indexes).to_json()
    raise ConfigError(f"unknown action {action!r}: prepare, gate, switch, rollback, cleanup or status")


def _prepare(pointers: Pointers, run: dict[str, Any]) -> dict[str, Any]:
    chosen = str(run.get("target") or "") or _name(pointers.building) or _name(pointers.serving)
    if not chosen or chosen not in {info.name for info in pointers.writing}:
        raise ConfigError(f"index {chosen or '(none)'} takes no writes: nothing to fill")
    return {
        "target": chosen,
        "prefix": str(run.get("prefix") or ""),
        "building": chosen != _name(pointers.serving),
    }


def _name(info: IndexInfo | None) -> str:
    return info.name if info is not None else ""


def _pointers(pointers: Pointers) -> dict[str, Any]:
    return {
        "serving": _name(pointers.serving),
        "writing": [info.name for info in pointers.writing],
        "previous": _name(pointers.previous),
    }
