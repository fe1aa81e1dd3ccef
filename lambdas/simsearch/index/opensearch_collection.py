"""The OpenSearch ``IndexCollection``: a deployment's indexes, their models, and the pointer aliases.

Each index records its model in the mapping's ``_meta`` (``model_id``, ``model_uri``), written when the
index is created; an index made before that is given it on its first ``create`` (``_meta`` can be put
on an existing mapping). Pointers are aliases, looked up among the prefix's own indexes (a role allowed
``<prefix>-*`` is refused a look-up across every index) and changed with one ``_aliases`` request each,
which OpenSearch applies atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from opensearchpy import OpenSearch

from simsearch.errors import ConfigError, NotFoundError
from simsearch.index import mapping
from simsearch.index.naming import POINTERS, Pointer, alias_name, pointer_name
from simsearch.index.opensearch import IndexConfig, OpenSearchIndex, client_for, translated_errors
from simsearch.index.port import IndexInfo, Pointers
from simsearch.settings import Settings


class OpenSearchCollection:
    """An ``IndexCollection`` on an OpenSearch domain or node (see the module docstring)."""

    def __init__(
        self, client: OpenSearch, *, prefix: str, config: IndexConfig, refresh: bool = False
    ) -> None:
        """``config`` is how new indexes are built (its ``dim`` and ``model`` are set per model)."""
        self._client = client
        self._prefix = prefix
        self._config = config
        self._refresh = refresh
        self._models: dict[str, IndexInfo] = {}  # index name -> what its mapping says (never changes)

    @classmethod
    def connect(cls, settings: Settings, *, refresh: bool = False) -> OpenSearchCollection:
        config = IndexConfig.from_settings(settings, dim=1)
        return cls(client_for(settings), prefix=settings.index_prefix, config=config, refresh=refresh)

    def pointers(self) -> Pointers:
        names = ",".join(pointer_name(self._prefix, pointer) for pointer in POINTERS)
        with translated_errors(self._prefix):
            found = self._client.indices.get_alias(index=f"{self._prefix}-*", name=names, ignore=404)
        targets: dict[str, list[str]] = {pointer: [] for pointer in POINTERS}
        for index, body in found.items():
            if isinstance(body, Mapping):  # the others are "error" and "status" when some alias is missing
                for alias in body.get("aliases", {}):
                    targets[alias.removeprefix(f"{self._prefix}-")].append(index)
        infos = self._infos(sorted({name for names in targets.values() for name in names}))
        serving, previous = (targets[p][0] if targets[p] else None for p in ("serving", "previous"))
        return Pointers(
            serving=infos[serving] if serving else None,
            writing=tuple(infos[name] for name in sorted(targets["writing"])),
            previous=infos[previous] if previous else None,
        )

    def pointed(self, pointer: Pointer) -> tuple[IndexInfo, ...]:
        """One request: the mapping of whatever the pointer alias resolves to names each index and its
        model (a missing alias is no index)."""
        alias = pointer_name(self._prefix, pointer)
        with translated_errors(alias):
            found = self._client.indices.get_mapping(index=alias, ignore=404)
        infos = [
            _info(name, body["mappings"], prefix=self._prefix)
            for name, body in found.items()
            if isinstance(body, Mapping) and "mappings" in body
        ]
        self._models.update((info.name, info) for info in infos)
        return tuple(sorted(infos, key=lambda info: info.name))

    def create(self, *, model_id: str, model_uri: str, dim: int) -> IndexInfo:
        model = {"model_id": model_id, "model_uri": model_uri}
        config = replace(self._config, dim=dim, model=model)
        name = OpenSearchIndex(self._client, alias=alias_name(self._prefix, model_id), config=config).ensure()
        info = self._infos([name])[name]
        if (info.model_id, info.model_uri) != (model_id, model_uri):  # made before models were recorded
            with translated_errors(name):
                self._client.indices.put_mapping(index=name, body={"_meta": model})
            info = self._models[name] = IndexInfo(name=name, model_id=model_id, model_uri=model_uri, dim=dim)
        return info

    def index(self, info: IndexInfo) -> OpenSearchIndex:
        config = replace(self._config, dim=info.dim)
        alias = alias_name(self._prefix, info.model_id)
        return OpenSearchIndex(
            self._client, alias=alias, name=info.name, config=config, refresh=self._refresh
        )

    def refresh(self, name: str) -> None:
        with translated_errors(name):
            self._client.indices.refresh(index=name)

    def add_writer(self, name: str) -> None:
        self._update([{"add": {"index": name, "alias": pointer_name(self._prefix, "writing")}}])

    def remove_writer(self, name: str) -> None:
        self._update([{"remove": {"index": name, "alias": pointer_name(self._prefix, "writing")}}])

    def serve(self, name: str, *, remember: bool = True) -> None:
        current = self.pointers()
        serving, previous = pointer_name(self._prefix, "serving"), pointer_name(self._prefix, "previous")
        actions: list[dict[str, Any]] = []
        if current.serving is not None and current.serving.name != name:
            actions += [{"remove": {"index": current.serving.name, "alias": serving}}]
            if current.previous is not None:
                actions += [{"remove": {"index": current.previous.name, "alias": previous}}]
            if remember:
                actions += [{"add": {"index": current.serving.name, "alias": previous}}]
        actions += [{"add": {"index": name, "alias": serving}}]
        self._update(actions)

    def drop(self, name: str) -> None:
        current = self.pointers()
        if name in {info.name for info in (current.serving, *current.writing) if info is not None}:
            raise ConfigError(f"index {name!r} still serves or takes writes; switch or stop writing first")
        with translated_errors(name):
            self._client.indices.delete(index=name, ignore_unavailable=True)  # its aliases go with it

    def close(self) -> None:
        self._client.close()

    def _update(self, actions: list[dict[str, Any]]) -> None:
        with translated_errors(self._prefix, missing="an index named in the pointer change does not exist"):
            self._client.indices.update_aliases(body={"actions": actions})

    def _infos(self, names: Iterable[str]) -> dict[str, IndexInfo]:
        """What each index's mapping says of its model (one request for the ones not seen before)."""
        unseen = [name for name in names if name not in self._models]
        if unseen:
            with translated_errors(",".join(unseen)):
                mappings = self._client.indices.get_mapping(index=",".join(unseen))
            for name, body in mappings.items():
                self._models[name] = _info(name, body["mappings"], prefix=self._prefix)
        return {name: self._models[name] for name in names}


def _info(name: str, mappings: Mapping[str, Any], *, prefix: str) -> IndexInfo:
    """An index's model from its ``_meta``; an index from before models were recorded is named by it."""
    meta = mappings.get("_meta", {})
    vector = mappings.get("properties", {}).get(mapping.VECTOR_FIELD)
    if vector is None:
        raise NotFoundError(f"index {name!r} holds no vectors")
    model_id = meta.get("model_id") or name.removeprefix(f"{prefix}-").rsplit("-v", 1)[0]
    return IndexInfo(
        name=name, model_id=model_id, model_uri=meta.get("model_uri", ""), dim=vector["dimension"]
    )
