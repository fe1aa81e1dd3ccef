"""The OpenSearch k-NN adapter: the deployed ``VectorIndex`` and ``FailureLog``.

Every index comes from ``mapping.index_body``; scores become cosine similarity with the formula of the
space type in use (``mapping.similarity_from_score``). Filters and excluded ids go into the k-NN query's
``filter`` (efficient filtering, lucene and faiss), so ``k`` matching documents come back even when few
match; ``min_similarity`` becomes the search's ``min_score``, applied to the k nearest.

Failures: connection errors, timeouts, 429 and 5xx become ``IndexUnavailableError`` (retryable). The
transport retries 502/503/504 and timeouts at once; bulk writes are then retried per document, with
exponential backoff, for as long as ``RetryPolicy`` allows, and whatever still fails is returned in
``WriteResult.failed`` with OpenSearch's reason.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from opensearchpy import OpenSearch, Urllib3AWSV4SignerAuth
from opensearchpy import exceptions as os_errors
from opensearchpy.helpers import streaming_bulk

from simsearch.errors import ConfigError, IndexUnavailableError, NotFoundError, SimsearchError
from simsearch.index import mapping
from simsearch.index.naming import alias_name, failures_name, version_name, versions_pattern
from simsearch.index.port import (
    SCAN_PAGE_SIZE,
    Document,
    FailureRecord,
    Filters,
    Hit,
    ImageMetadata,
    IndexedImage,
    Vector,
    WriteResult,
    check_search_arguments,
    unit_vector,
)
from simsearch.settings import Engine, Settings, SpaceType

logger = logging.getLogger(__name__)

_RETRY_ON_STATUS = (502, 503, 504)  # the transport resends these at once; bulk items also back off


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often a bulk write retries the documents that failed retryably, and how long it waits.

    The defaults wait 1 + 2 + 4 s: within one ingestion invocation's budget; SQS retries beyond that.
    """

    attempts: int = 4
    initial_backoff: float = 1.0
    max_backoff: float = 8.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (1 is the first retry)."""
        return float(min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1)))


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    """How a versioned index is built and searched; the defaults are ``Settings``' (the shipped ones)."""

    dim: int
    engine: Engine = Settings.engine
    space_type: SpaceType = Settings.space_type
    m: int = Settings.hnsw_m
    ef_construction: int = Settings.hnsw_ef_construction
    ef_search: int = Settings.hnsw_ef_search
    fp16: bool = False
    model: Mapping[str, str] | None = None  # recorded in the mapping's _meta: model_id, model_uri

    @classmethod
    def from_settings(cls, settings: Settings, *, dim: int) -> IndexConfig:
        return cls(
            dim=dim,
            engine=settings.engine,
            space_type=settings.space_type,
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
        )

    def body(self) -> dict[str, Any]:
        return mapping.index_body(
            dim=self.dim,
            engine=self.engine,
            space_type=self.space_type,
            m=self.m,
            ef_construction=self.ef_construction,
            ef_search=self.ef_search,
            fp16=self.fp16,
            model=self.model,
        )


def client_for(settings: Settings, *, timeout: float | None = None) -> OpenSearch:
    """An OpenSearch client for ``settings.opensearch_url`` with the configured authentication.

    Each request waits ``timeout`` (default ``settings.opensearch_timeout_s``) and is retried
    ``settings.opensearch_retries`` times, so a request costs at most ``(1 + retries) × timeout``.

    ``sigv4`` signs with the default boto3 credential chain; the signer asks the credentials object
    for fresh values on every request, so expiring role credentials are refreshed, not cached.
    ``basic`` takes the user and password from the URL (``https://user:pass@host:9200``, local nodes).
    """
    if not settings.opensearch_url:
        raise ConfigError("opensearch_url is empty; set it, or use the embedded index")
    options: dict[str, Any] = {
        "hosts": [settings.opensearch_url],
        "timeout": settings.opensearch_timeout_s if timeout is None else timeout,
        "max_retries": settings.opensearch_retries,
        "retry_on_timeout": True,
        "retry_on_status": _RETRY_ON_STATUS,
    }
    if settings.opensearch_auth == "sigv4":
        options["http_auth"] = Urllib3AWSV4SignerAuth(
            _aws_credentials(), settings.aws_region, settings.opensearch_service
        )
    elif settings.opensearch_auth == "basic" and "@" not in settings.opensearch_url:
        raise ConfigError("opensearch_auth is 'basic' but opensearch_url has no user:password@ part")
    return OpenSearch(**options)


def _aws_credentials() -> Any:
    import boto3  # in the Lambda runtime; only the SigV4 path needs it

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ConfigError("opensearch_auth is 'sigv4' but no AWS credentials were found")
    return credentials


class OpenSearchIndex:
    """A ``VectorIndex`` on an OpenSearch domain or node (see the module docstring)."""

    def __init__(
        self,
        client: OpenSearch,
        *,
        alias: str,
        config: IndexConfig,
        name: str | None = None,
        refresh: bool = False,
        retry: RetryPolicy | None = None,
        chunk_size: int = 200,
    ) -> None:
        """``refresh=True`` makes each write visible to search before it returns (tests, local runs)."""
        self._client = client
        self._alias = alias
        self._name = name or alias
        self._config = config
        self._refresh = refresh
        self._retry = retry or RetryPolicy()
        self._chunk_size = chunk_size

    @classmethod
    def connect(
        cls, settings: Settings, *, model_id: str, dim: int, refresh: bool = False
    ) -> OpenSearchIndex:
        """The index that ``settings`` describe, for the model ``model_id`` with ``dim``-wide vectors."""
        alias = alias_name(settings.index_prefix, model_id)
        config = IndexConfig.from_settings(settings, dim=dim)
        return cls(client_for(settings), alias=alias, config=config, refresh=refresh)

    @property
    def dim(self) -> int:
        return self._config.dim

    @property
    def name(self) -> str:
        return self._name

    def ensure(self) -> str:
        with self._errors():
            if self._name != self._alias:
                self._create(self._name, with_alias=False)
                self._check_dimension(self._name)
                return self._name
            targets = self._alias_targets()
            if not targets:
                target = version_name(self._alias, 1)
                self._create(target, with_alias=True)
                targets = self._alias_targets() or [target]
            self._check_dimension(targets[0])
            return targets[0]

    def upsert(self, docs: Sequence[Document]) -> WriteResult:
        latest = {doc.image_id: doc for doc in docs}  # a batch may repeat an id: the last one wins
        vectors = {image_id: unit_vector(doc.vector, dim=self.dim) for image_id, doc in latest.items()}
        actions = {
            image_id: {
                "_op_type": "index",
                "_index": self._name,
                "_id": image_id,
                "_source": {
                    **doc.metadata.to_source(),
                    "image_id": image_id,
                    mapping.VECTOR_FIELD: vectors[image_id].tolist(),
                },
            }
            for image_id, doc in latest.items()
        }
        return self._bulk(actions)

    def delete(self, image_ids: Sequence[str]) -> WriteResult:
        actions = {
            image_id: {"_op_type": "delete", "_index": self._name, "_id": image_id}
            for image_id in dict.fromkeys(image_ids)
        }
        return self._bulk(actions)

    def get(self, image_id: str) -> Document:
        with self._errors(missing=f"no image with id {image_id!r} in index {self._name!r}"):
            response = self._client.get(index=self._name, id=image_id)
        source = response["_source"]
        vector = np.asarray(source[mapping.VECTOR_FIELD], dtype=np.float32)
        return Document(image_id=image_id, vector=vector, metadata=ImageMetadata.from_source(source))

    def lookup(self, image_ids: Sequence[str]) -> dict[str, IndexedImage]:
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            return {}
        with self._errors():
            response = self._client.mget(
                index=self._name, body={"ids": ids}, params={"_source_excludes": mapping.VECTOR_FIELD}
            )
        found: dict[str, IndexedImage] = {}
        for doc in response["docs"]:
            if "error" in doc:
                raise _lookup_error(self._name, doc)
            if doc.get("found"):
                image_id = str(doc["_id"])
                found[image_id] = IndexedImage(
                    image_id=image_id, metadata=ImageMetadata.from_source(doc["_source"])
                )
        return found

    def search(
        self,
        vector: Vector,
        *,
        k: int,
        filters: Filters | None = None,
        min_similarity: float | None = None,
        exclude_ids: Collection[str] = (),
    ) -> list[Hit]:
        check_search_arguments(k=k, min_similarity=min_similarity)
        query = unit_vector(vector, dim=self.dim)
        knn: dict[str, Any] = {
            "vector": query.tolist(),
            "k": k,
            # lucene ignores the index setting and takes ef_search only here (OpenSearch >= 2.16)
            "method_parameters": {"ef_search": max(k, self._config.ef_search)},
        }
        restriction = _restriction(filters, exclude_ids)
        if restriction is not None:
            knn["filter"] = restriction
        body: dict[str, Any] = {
            "size": k,
            "query": {"knn": {mapping.VECTOR_FIELD: knn}},
            "_source": {"excludes": [mapping.VECTOR_FIELD]},
            "track_total_hits": False,
        }
        if min_similarity is not None:
            body["min_score"] = mapping.score_from_similarity(
                min_similarity, space_type=self._config.space_type
            )
        with self._errors():
            response = self._client.search(index=self._name, body=body)
        return [self._hit(raw) for raw in response["hits"]["hits"]]

    def vectors_by_content(self, content_ids: Collection[str], *, model_id: str) -> dict[str, Vector]:
        """One ``terms`` query, collapsed on ``content_sha256``: one hit per known content, vector only."""
        wanted = sorted(set(content_ids))
        if not wanted:
            return {}
        body: dict[str, Any] = {
            "size": len(wanted),
            "query": {
                "bool": {
                    "filter": [
                        {"terms": {mapping.CONTENT_FIELD: wanted}},
                        {"term": {"model_id": model_id}},
                    ]
                }
            },
            "collapse": {"field": mapping.CONTENT_FIELD},
            "_source": {"includes": [mapping.CONTENT_FIELD, mapping.VECTOR_FIELD]},
            "track_total_hits": False,
        }
        with self._errors():
            hits = self._client.search(index=self._name, body=body)["hits"]["hits"]
        return {
            str(hit["_source"][mapping.CONTENT_FIELD]): np.asarray(
                hit["_source"][mapping.VECTOR_FIELD], dtype=np.float32
            )
            for hit in hits
        }

    def with_content(self, content_id: str, *, limit: int) -> list[IndexedImage]:
        body: dict[str, Any] = {
            "size": limit,
            "query": {"bool": {"filter": [{"term": {mapping.CONTENT_FIELD: content_id}}]}},
            "sort": [{"image_id": "asc"}],
            "_source": {"excludes": [mapping.VECTOR_FIELD]},
            "track_total_hits": False,
        }
        with self._errors():
            hits = self._client.search(index=self._name, body=body)["hits"]["hits"]
        return [
            IndexedImage(image_id=str(hit["_id"]), metadata=ImageMetadata.from_source(hit["_source"]))
            for hit in hits
        ]

    def count(self) -> int:
        with self._errors():
            return int(self._client.count(index=self._name)["count"])

    def scan(self, *, page_size: int = SCAN_PAGE_SIZE) -> Iterator[IndexedImage]:
        """``search_after`` on the unique ``image_id`` pages without a point in time, whose create and
        delete calls the functions' roles are not granted; each page is one bounded ``_search``."""
        body: dict[str, Any] = {
            "size": page_size,
            "query": {"match_all": {}},
            "sort": [{"image_id": "asc"}],
            "_source": {"excludes": [mapping.VECTOR_FIELD]},
            "track_total_hits": False,
        }
        while True:
            with self._errors():
                hits = self._client.search(index=self._name, body=body)["hits"]["hits"]
            for hit in hits:
                yield IndexedImage(
                    image_id=str(hit["_id"]), metadata=ImageMetadata.from_source(hit["_source"])
                )
            if len(hits) < page_size:
                return
            body["search_after"] = hits[-1]["sort"]

    def close(self) -> None:
        self._client.close()

    def _create(self, index: str, *, with_alias: bool) -> None:
        body = self._config.body()
        if with_alias:
            body["aliases"] = {self._alias: {"is_write_index": True}}
        try:
            self._client.indices.create(index=index, body=body)
        except os_errors.RequestError as error:
            if error.error != "resource_already_exists_exception":  # another cold start won the race
                raise

    def _alias_targets(self) -> list[str]:
        """The concrete indexes behind the alias (one, or none before ``ensure``), among its versions."""
        try:
            return sorted(
                self._client.indices.get_alias(index=versions_pattern(self._alias), name=self._alias)
            )
        except os_errors.NotFoundError:  # "alias [...] missing"
            return []

    def _check_dimension(self, index: str) -> None:
        properties = self._client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
        stored = properties[mapping.VECTOR_FIELD]["dimension"]
        if stored != self.dim:
            raise ConfigError(f"index {index!r} holds {stored}-dimensional vectors, not {self.dim}")

    def _bulk(self, actions: Mapping[str, dict[str, Any]]) -> WriteResult:
        """Send ``actions``; retry the retryable failures with backoff; report the rest by id."""
        pending = dict(actions)
        succeeded: list[str] = []
        permanent: dict[str, str] = {}
        retryable: dict[str, str] = {}
        for attempt in range(self._retry.attempts):
            if attempt:
                logger.warning("retrying bulk write", extra={"documents": len(pending), "attempt": attempt})
                time.sleep(self._retry.backoff(attempt))
            retryable = {}
            for ok, image_id, reason, may_pass in self._send(pending.values()):
                if ok:
                    succeeded.append(image_id)
                else:
                    (retryable if may_pass else permanent)[image_id] = reason
            pending = {image_id: actions[image_id] for image_id in retryable}
            if not pending:
                break
        return WriteResult(succeeded=tuple(succeeded), failed={**permanent, **retryable})

    def _send(self, actions: Collection[dict[str, Any]]) -> Iterator[tuple[bool, str, str, bool]]:
        """(ok, id, reason, retryable) per action, through opensearch-py's bulk helper."""
        results = streaming_bulk(
            self._client,
            actions,
            chunk_size=self._chunk_size,
            raise_on_error=False,
            raise_on_exception=False,
            refresh="wait_for" if self._refresh else "false",
        )
        for ok, item in results:
            ((operation, info),) = item.items()
            gone = operation == "delete" and info.get("result") == "not_found"  # deleting is idempotent
            status = info.get("status")
            yield ok or gone, str(info["_id"]), _reason(info), _is_retryable(status)

    def _hit(self, raw: Mapping[str, Any]) -> Hit:
        score = float(raw["_score"])
        return Hit(
            image_id=str(raw["_id"]),
            similarity=mapping.similarity_from_score(score, space_type=self._config.space_type),
            score=score,
            metadata=ImageMetadata.from_source(raw["_source"]),
        )

    @contextmanager
    def _errors(self, *, missing: str | None = None) -> Iterator[None]:
        with translated_errors(self._name, missing=missing):
            yield


def _restriction(filters: Filters | None, exclude_ids: Collection[str]) -> dict[str, Any] | None:
    """The k-NN ``filter`` for a restricted search, or None when every document may match."""
    required: list[dict[str, Any]] = []
    if filters is not None and filters.label is not None:
        required.append({"term": {"label": filters.label}})
    if filters is not None and filters.key_prefix:
        required.append({"prefix": {"key": filters.key_prefix}})
    excluded = [{"ids": {"values": list(exclude_ids)}}] if exclude_ids else []
    if not required and not excluded:
        return None
    return {"bool": {"filter": required, "must_not": excluded}}


def _lookup_error(index: str, doc: Mapping[str, Any]) -> SimsearchError:
    """A multi-get's per-document error: a missing index, or a shard that did not answer."""
    error = doc["error"]
    kind = error.get("type") if isinstance(error, Mapping) else None
    if kind == "index_not_found_exception":
        return NotFoundError(f"index {index!r} does not exist; call ensure() first")
    return IndexUnavailableError(f"index {index!r} could not read {doc.get('_id')!r}: {error}")


def _is_retryable(status: object) -> bool:
    """429 and 5xx may pass on retry; so may a connection error or timeout (status ``N/A``)."""
    return not isinstance(status, int) or status == 429 or status >= 500


def _reason(info: Mapping[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, Mapping):
        return f"{info.get('status')} {error.get('type')}: {error.get('reason')}"
    return f"{info.get('status')} {error}" if error else ""


@contextmanager
def translated_errors(index: str, *, missing: str | None = None) -> Iterator[None]:
    """Re-raise opensearch-py errors as ours; anything else (e.g. a 400 on our own query) is a bug."""
    try:
        yield
    except os_errors.TransportError as error:
        translated = _translate(error, index=index, missing=missing)
        if translated is None:
            raise
        raise translated from error


def _translate(error: os_errors.TransportError, *, index: str, missing: str | None) -> SimsearchError | None:
    if isinstance(error, os_errors.ConnectionError) or _is_retryable(error.status_code):
        return IndexUnavailableError(f"OpenSearch did not answer for index {index!r}: {error}")
    if isinstance(error, os_errors.NotFoundError):
        if error.error == "index_not_found_exception" or missing is None:
            return NotFoundError(f"index {index!r} does not exist; call ensure() first")
        return NotFoundError(missing)
    if isinstance(error, os_errors.AuthenticationException | os_errors.AuthorizationException):
        return ConfigError(
            f"OpenSearch refused access to index {index!r} ({error.status_code}): check the role"
        )
    return None


class OpenSearchFailureLog:
    """A ``FailureLog`` in the small ``<prefix>-failures`` index."""

    def __init__(self, client: OpenSearch, *, name: str, refresh: bool = False) -> None:
        self._client = client
        self._name = name
        self._refresh = refresh

    @classmethod
    def connect(cls, settings: Settings, *, refresh: bool = False) -> OpenSearchFailureLog:
        return cls(client_for(settings), name=failures_name(settings.index_prefix), refresh=refresh)

    def ensure(self) -> None:
        with translated_errors(self._name):
            try:
                self._client.indices.create(index=self._name, body=mapping.failures_body())
            except os_errors.RequestError as error:
                if error.error != "resource_already_exists_exception":
                    raise

    def close(self) -> None:
        self._client.close()

    def record(self, failure: FailureRecord) -> None:
        document = {
            "key": failure.key,
            "reason_code": failure.reason_code,
            "message": failure.message,
            "at": failure.at.isoformat(),
        }
        if failure.etag is not None:
            document["etag"] = failure.etag
        with translated_errors(self._name):
            self._client.index(
                index=self._name,
                id=_failure_id(failure.key, failure.etag),
                body=document,
                refresh="wait_for" if self._refresh else "false",
            )

    def recent(self, limit: int) -> list[FailureRecord]:
        body = {"size": limit, "sort": [{"at": {"order": "desc"}}], "query": {"match_all": {}}}
        with translated_errors(self._name):
            response = self._client.search(index=self._name, body=body)
        return [
            FailureRecord(
                key=source["key"],
                etag=source.get("etag"),
                reason_code=source["reason_code"],
                message=source["message"],
                at=datetime.fromisoformat(source["at"]),
            )
            for source in (hit["_source"] for hit in response["hits"]["hits"])
        ]


def _failure_id(key: str, etag: str | None) -> str:
    """One record per object version: the same failure recorded twice replaces itself."""
    return hashlib.sha256(f"{key}\0{etag or ''}".encode()).hexdigest()[:32]
