"""Re-indexing without downtime: fill a new model's index beside the serving one, switch when it is ready.

The pointers (``simsearch.index.port.Pointers``) carry the whole sequence, and each step is one atomic
pointer change, so queries never wait and never mix models:

1. ``attach``: a deployment with a new model creates that model's index and adds it to ``writing``;
   ``serving`` stays where it is. From then on every upload and delete reaches both indexes, each
   embedded with its own index's model (``simsearch.ingestion.collection``).
2. backfill: every object already in the bucket is synced into the new index (AWS: the Step Functions
   distributed map; locally: ``imgsearch reindex start``). Objects that change meanwhile end up right
   either way, because ingestion decides from the object as it is now.
3. ``gate``: the new index must hold at least what the serving one holds (less a tolerance for images
   only the old model could read), and optionally return neighbours like the serving one's on a sample.
4. ``switch``: ``serving`` moves to the new index and ``previous`` to the old, in one step. Both still
   take writes, so ``rollback`` (``serving`` back to ``previous``) loses nothing; the new index is then
   the one being built again, and the next switch goes forward to it.
5. ``cleanup``: the index that no longer serves stops taking writes and is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simsearch.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from simsearch.index.port import IndexCollection, IndexInfo, Pointers, VectorIndex

DEFAULT_TOLERANCE = 0.005
"""How far the new index may fall short of the serving one: images only the old model could read."""


@dataclass(frozen=True, kw_only=True)
class Attached:
    """The index of a model, and whether it must be filled before it can serve (``building``)."""

    info: IndexInfo
    serving: IndexInfo

    @property
    def building(self) -> bool:
        return self.info != self.serving


@dataclass(frozen=True, kw_only=True)
class IndexState:
    info: IndexInfo
    documents: int
    roles: tuple[str, ...]  # "serving", "writing", "previous"


@dataclass(frozen=True, kw_only=True)
class Status:
    pointers: Pointers
    indexes: tuple[IndexState, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "serving": self.pointers.serving.name if self.pointers.serving else None,
            "building": self.pointers.building.name if self.pointers.building else None,
            "previous": self.pointers.previous.name if self.pointers.previous else None,
            "indexes": [
                {
                    "name": s.info.name,
                    "model_id": s.info.model_id,
                    "documents": s.documents,
                    "roles": list(s.roles),
                }
                for s in self.indexes
            ],
        }


@dataclass(frozen=True, kw_only=True)
class Gate:
    """Whether ``target`` may serve, and why not."""

    target: IndexInfo
    documents: int
    expected: int
    overlap: float | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not self.problems


def attach(collection: IndexCollection, *, model_id: str, model_uri: str, dim: int) -> Attached:
    """Make ``model_id``'s index take writes, and serve when nothing serves yet (a first deployment)."""
    info = collection.create(model_id=model_id, model_uri=model_uri, dim=dim)
    collection.add_writer(info.name)
    serving = collection.pointers().serving
    if serving is None:
        collection.serve(info.name)
        serving = info
    return Attached(info=info, serving=serving)


def status(collection: IndexCollection) -> Status:
    """Every index a pointer names, what it is for, and how many images it holds."""
    pointers = collection.pointers()
    roles: dict[str, list[str]] = {}
    known: dict[str, IndexInfo] = {}
    named = [
        ("serving", pointers.serving),
        *(("writing", w) for w in pointers.writing),
        ("previous", pointers.previous),
    ]
    for role, info in named:
        if info is not None:
            roles.setdefault(info.name, []).append(role)
            known[info.name] = info
    states = tuple(
        IndexState(
            info=known[name], documents=collection.index(known[name]).count(), roles=tuple(roles[name])
        )
        for name in sorted(roles)
    )
    return Status(pointers=pointers, indexes=states)


def gate(
    collection: IndexCollection,
    *,
    target: str = "",
    tolerance: float = DEFAULT_TOLERANCE,
    sample: int = 0,
    min_overlap: float = 0.0,
    k: int = 10,
    seed: int = 0,
) -> Gate:
    """Check ``target`` (default: the index being built) against the serving one: counts, and the
    top-``k`` overlap on ``sample`` images. Both are refreshed first: a count sees only what the engine
    has made searchable, and the last batches of a backfill may be a second old."""
    pointers = collection.pointers()
    building, serving = _target(pointers, target), pointers.serving
    if serving is None:
        raise NotFoundError("nothing serves yet: there is nothing to switch from")
    for info in (building, serving):
        collection.refresh(info.name)
    new, old = collection.index(building), collection.index(serving)
    documents, held = new.count(), old.count()
    expected = int(held * (1 - tolerance))
    problems = []
    if documents < expected:
        problems.append(
            f"{building.name} holds {documents} images; the serving {serving.name} holds {held}, so at least "
            f"{expected} are expected (tolerance {tolerance:.1%}): let the backfill finish, or look at "
            "`imgsearch failures`"
        )
    overlap = _overlap(old, new, sample=sample, k=k, seed=seed) if sample else None
    if overlap is not None and overlap < min_overlap:
        problems.append(f"top-{k} overlap with the serving index is {overlap:.2f}, below {min_overlap:.2f}")
    return Gate(
        target=building, documents=documents, expected=expected, overlap=overlap, problems=tuple(problems)
    )


def switch(
    collection: IndexCollection, *, target: str = "", check: Gate | None = None, force: bool = False
) -> Pointers:
    """Serve ``target`` (default: the index being built), after ``check`` or a fresh ``gate``, unless
    ``force``."""
    result = check or gate(collection, target=target)
    if not (result.passed or force):
        raise ConfigError("the new index may not serve yet: " + "; ".join(result.problems))
    collection.serve(result.target.name)
    return collection.pointers()


def rollback(collection: IndexCollection) -> Pointers:
    """Serve again what served before the last switch (it kept taking writes). The index rolled back
    from takes writes still and is the one being built again: a later switch goes forward to it."""
    previous = collection.pointers().previous
    if previous is None:
        raise NotFoundError("nothing served before: there is nothing to roll back to")
    collection.serve(previous.name, remember=False)
    return collection.pointers()


def cleanup(collection: IndexCollection) -> list[str]:
    """Stop writing to, and delete, every index that is not serving (after a switch or a rollback)."""
    pointers = collection.pointers()
    serving = pointers.serving
    if serving is None:
        raise NotFoundError("nothing serves: there is nothing to keep")
    dropped = [info.name for info in (*pointers.writing, pointers.previous) if info and info != serving]
    for name in dict.fromkeys(dropped):
        collection.remove_writer(name)
        collection.drop(name)
    return list(dict.fromkeys(dropped))


STEPS = ("prepare", "gate", "switch", "rollback", "cleanup", "status")


def step(collection: IndexCollection, event: Mapping[str, Any]) -> dict[str, Any]:
    """One operator step as JSON: what the state machine's tasks, ``imgsearch reindex`` and
    ``imgsearch backfill`` ask, in AWS (``handlers.reindex``) and locally alike.

    ``{"action": ...}`` with one of ``STEPS``:

    - ``prepare`` (``input``: ``{"target": ..., "prefix": ..., "manifest": ...}``, all optional): the
      index a backfill fills (the one given, else the one being built, else the serving one: a plain
      backfill of the bucket), the key prefix to list, or the S3 Inventory manifest to read instead;
      ``building`` says whether it is a re-index, which may end with a switch.
    - ``gate`` (``target``: default the index being built; ``sample``, ``min_overlap``: the optional
      quality check): may it serve?
    - ``switch`` (``target`` as for the gate; ``force``: skip the gate), ``rollback``, ``cleanup``,
      ``status``.

    A refused step raises (``ConfigError``, ``NotFoundError``): the state machine fails with the reason.
    """
    action = str(event.get("action", ""))
    if action == "prepare":
        return _prepare(collection.pointers(), event.get("input") or {})
    target = str(event.get("target") or "")
    if action == "gate":
        sample, overlap = int(event.get("sample", 0)), float(event.get("min_overlap", 0.0))
        result = gate(collection, target=target, sample=sample, min_overlap=overlap)
        return {**asdict(result), "passed": result.passed}
    if action == "switch":
        return _pointers(switch(collection, target=target, force=bool(event.get("force", False))))
    if action == "rollback":
        return _pointers(rollback(collection))
    if action == "cleanup":
        return {"dropped": cleanup(collection)}
    if action == "status":
        return status(collection).to_json()
    raise ConfigError(f"unknown action {action!r}: one of {', '.join(STEPS)}")


def _prepare(pointers: Pointers, run: Mapping[str, Any]) -> dict[str, Any]:
    chosen = str(run.get("target") or "") or _name(pointers.building) or _name(pointers.serving)
    if not chosen or chosen not in {info.name for info in pointers.writing}:
        raise ConfigError(f"index {chosen or '(none)'} takes no writes: nothing to fill")
    return {
        "target": chosen,
        "prefix": str(run.get("prefix") or ""),
        "manifest": str(run.get("manifest") or ""),
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


def _target(pointers: Pointers, name: str) -> IndexInfo:
    """The index named (it must take writes), else the one being built."""
    if name:
        named = next((info for info in pointers.writing if info.name == name), None)
        if named is None:
            raise NotFoundError(f"index {name} takes no writes: it cannot serve")
        return named
    if pointers.building is None:
        raise NotFoundError("no index is being built: a re-index starts when a new model is deployed")
    return pointers.building


def _overlap(old: VectorIndex, new: VectorIndex, *, sample: int, k: int, seed: int) -> float:
    """Mean share of the serving index's top-``k`` that the new index also returns, per sampled image.

    Images are sampled as the serving index's nearest neighbours of random directions; each is then
    searched in both indexes with its own stored vector there.
    """
    rng = np.random.default_rng(seed)
    probes = rng.standard_normal((sample, old.dim)).astype(np.float32)
    ids = list(dict.fromkeys(hit.image_id for probe in probes for hit in old.search(probe, k=1)))
    shares = []
    for image_id in ids:
        try:
            before = {h.image_id for h in old.search(old.get(image_id).vector, k=k)}
            after = {h.image_id for h in new.search(new.get(image_id).vector, k=k)}
        except NotFoundError:
            continue  # not in the new index (yet): the count check speaks for it
        shares.append(len(before & after) / max(1, len(before)))
    return sum(shares) / len(shares) if shares else 0.0
