"""The embedded vector index: no server, the local default.

SQLite (standard library) is the durable source of truth: one row per document with its float32 vector
as a blob, WAL journal, one transaction per batch, so a crash mid-batch leaves either the whole batch or
none of it. faiss answers queries from memory; it is rebuilt from SQLite when first needed and kept in
step on every write. If another process writes to the same index (its ``generation`` moved on), the
in-memory structure is rebuilt from SQLite before the next search.

Search: an exact inner-product index (``IndexIDMap2`` over ``IndexFlatIP``) until an index holds
``hnsw_threshold`` vectors, then HNSW with the same ``m``/``ef_construction``/``ef_search`` as the
OpenSearch index. HNSW cannot remove vectors, so removed ones stay in the graph, excluded at search
time, until they are a quarter of it and the graph is rebuilt. Filters select candidate ids in SQLite
first and faiss searches only those; if HNSW finds fewer than ``k`` of them, an exact search over the
candidates answers instead, so a selective filter still returns every match up to ``k``.

Scores mirror OpenSearch: ``score`` is the score OpenSearch would give the same cosine similarity in
the configured space type (``mapping.score_from_similarity``), so callers see one scale everywhere.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from simsearch.errors import ConfigError, IndexUnavailableError, NotFoundError
from simsearch.index import mapping
from simsearch.index.naming import POINTERS, Pointer, alias_name, version_name
from simsearch.index.port import (
    SCAN_PAGE_SIZE,
    Document,
    FailureRecord,
    Filters,
    Hit,
    ImageMetadata,
    IndexedImage,
    IndexInfo,
    Pointers,
    Vector,
    WriteResult,
    check_search_arguments,
    unit_vector,
)
from simsearch.settings import Settings, SpaceType

if TYPE_CHECKING:
    import numpy.typing as npt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS indexes (
    name TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS aliases (alias TEXT PRIMARY KEY, target TEXT NOT NULL REFERENCES indexes (name));
CREATE TABLE IF NOT EXISTS documents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    index_name TEXT NOT NULL REFERENCES indexes (name),
    image_id TEXT NOT NULL,
    label TEXT,
    key TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (index_name, image_id)
);
CREATE INDEX IF NOT EXISTS documents_by_label ON documents (index_name, label);
CREATE INDEX IF NOT EXISTS documents_by_content
    ON documents (index_name, json_extract(metadata, '$.content_sha256'));
CREATE TABLE IF NOT EXISTS models (
    index_name TEXT PRIMARY KEY REFERENCES indexes (name),
    model_id TEXT NOT NULL,
    model_uri TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pointers (
    prefix TEXT NOT NULL,
    pointer TEXT NOT NULL,
    target TEXT NOT NULL REFERENCES indexes (name),
    PRIMARY KEY (prefix, pointer, target)
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    reason_code TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (key, etag)
);
"""
_CONTENT = "json_extract(metadata, '$.content_sha256')"
"""The content id in SQL, spelt exactly as ``documents_by_content`` indexes it (SQLite then uses the index).
An expression index, not a column: files written before content ids were recorded need no migration."""
_MAX_PARAMETERS = 500  # values per ``IN (...)``, well under SQLite's limit on bound parameters

# ``seq`` is the faiss id. AUTOINCREMENT never reuses one, so a removed vector still in an HNSW graph
# can never be mistaken for a newer document. ``generation`` counts committed writes per index: a
# process whose faiss structure was built at an older generation rebuilds it (another process wrote).

DEFAULT_HNSW_THRESHOLD = 50_000
_REBUILD_STALE_FRACTION = 0.25
_LOOKUP_PAGE = 500  # ids per statement of a lookup: well under SQLite's cap on a statement's parameters


@dataclass(frozen=True, kw_only=True)
class HnswParams:
    """When to switch from exact search to HNSW, and the graph's parameters."""

    threshold: int = DEFAULT_HNSW_THRESHOLD
    m: int = Settings.hnsw_m
    ef_construction: int = Settings.hnsw_ef_construction
    ef_search: int = Settings.hnsw_ef_search


class _Store:
    """One SQLite connection, its lock, and the faiss structures built from it, shared by handles."""

    def __init__(self, path: Path, hnsw: HnswParams) -> None:
        """Open (or create) the file, and check now that it can be written.

        Every handle needs that, readers included: WAL readers write the ``-shm`` file beside it. A
        read-only file would otherwise open, answer reads, and fail each write as if for a moment.
        """
        self.path = path
        self.lock = threading.RLock()
        self.hnsw = hnsw
        self._neighbours: dict[str, _Neighbours] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _unwritable(path, f"cannot create {error.filename}: {error.strerror}") from error
        with self._sqlite_errors():
            # autocommit mode: transactions are explicit, one per batch (``writing``) or read (``reading``)
            self.conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.executescript(_SCHEMA)
        try:
            with self.writing() as conn:  # a write that changes nothing, refused as a real one would be
                conn.execute("UPDATE indexes SET generation = generation WHERE 0")
        except ConfigError:
            self.conn.close()
            raise

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot: writers in other processes do not show up half-way through a search."""
        with self._transaction("BEGIN") as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all."""
        with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self.lock, self._sqlite_errors():
            self.conn.execute(begin)
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def neighbours(self, index_name: str, dim: int) -> _Neighbours:
        """The faiss structure of ``index_name``; (re)built from SQLite if missing or out of date."""
        generation = self._generation(index_name)
        cached = self._neighbours.get(index_name)
        if cached is None or cached.generation != generation:  # another process wrote, or a rebuild is due
            rows = self.conn.execute(
                "SELECT seq, vector FROM documents WHERE index_name = ?", (index_name,)
            ).fetchall()
            seqs = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(-1, dim)
            cached = _Neighbours(dim=dim, hnsw=self.hnsw if len(rows) >= self.hnsw.threshold else None)
            cached.add(seqs, vectors)
            cached.generation = generation
            self._neighbours[index_name] = cached
        return cached

    def forget(self, index_name: str) -> None:
        """Drop the in-memory structure of an index that no longer exists."""
        self._neighbours.pop(index_name, None)

    def changed(self, conn: sqlite3.Connection, index_name: str) -> int:
        """Count one more write to ``index_name`` (inside its transaction); returns the new generation."""
        conn.execute("UPDATE indexes SET generation = generation + 1 WHERE name = ?", (index_name,))
        return self._generation(index_name)

    def keep_in_step(
        self, index_name: str, *, generation: int, removed: list[int], added: list[tuple[int, Vector]]
    ) -> None:
        """Apply a committed write to the cached faiss structure, or drop it to be rebuilt."""
        cached = self._neighbours.pop(index_name, None)
        if cached is None or cached.generation != generation - 1:  # absent, or already behind
            return
        cached.remove(np.asarray(removed, dtype=np.int64))
        if added:
            cached.add(np.asarray([seq for seq, _ in added], dtype=np.int64), np.stack([v for _, v in added]))
        if not cached.needs_rebuild(self.hnsw):
            cached.generation = generation
            self._neighbours[index_name] = cached

    def _generation(self, index_name: str) -> int:
        row = self.conn.execute("SELECT generation FROM indexes WHERE name = ?", (index_name,)).fetchone()
        return int(row[0])

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """A file we may not write is a fault to fix; a locked or full one is an outage worth retrying."""
        try:
            yield
        except sqlite3.OperationalError as error:
            if error.sqlite_errorname.startswith(_UNWRITABLE):
                raise _unwritable(self.path, str(error)) from error
            raise IndexUnavailableError(f"the embedded index {self.path} failed: {error}") from error


_UNWRITABLE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")
"""SQLite's result codes (extended ones start with these) for a file or folder this process may not write."""


def _unwritable(path: Path, cause: str) -> ConfigError:
    folder = next(parent for parent in path.parents if parent.is_dir())  # the one to fix, if not created yet
    return ConfigError(
        f"the embedded index {path} cannot be written ({cause}): make {folder} and the files in it "
        "writable by this user, or set embedded_index_path to a folder that is"
    )


@contextmanager
def _one_thread() -> Iterator[None]:
    """Search one query on the calling thread only.

    One query gains nothing from OpenMP's threads, and on busy cores waking them costs ~10 ms per
    search (IndexIDMap2 translates ids in a parallel loop): measured 9-12 ms vs 1 ms at 5k vectors.
    Graph builds keep every thread. Callers hold the store's lock, so no other search interleaves.
    """
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


class _Neighbours:
    """faiss over the live vectors of one index; faiss ids are SQLite ``seq`` values."""

    def __init__(self, *, dim: int, hnsw: HnswParams | None) -> None:
        self._hnsw = hnsw
        if hnsw is None:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        else:
            graph = faiss.IndexHNSWFlat(dim, hnsw.m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = hnsw.ef_construction
            self._index = faiss.IndexIDMap2(graph)
        self._stale: set[int] = set()
        self.generation = 0  # the index's write count this structure reflects

    def add(self, seqs: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        if len(seqs):
            self._index.add_with_ids(np.ascontiguousarray(vectors), seqs)

    def remove(self, seqs: npt.NDArray[np.int64]) -> None:
        if not len(seqs):
            return
        if self._hnsw is None:
            self._index.remove_ids(faiss.IDSelectorBatch(seqs))
        else:
            self._stale.update(int(seq) for seq in seqs)

    def needs_rebuild(self, hnsw: HnswParams) -> bool:
        """Too many removed vectors linger in the graph, or the exact index outgrew its threshold."""
        if self._hnsw is None:
            return bool(self._index.ntotal >= hnsw.threshold)
        return len(self._stale) > _REBUILD_STALE_FRACTION * self._index.ntotal

    def search(
        self, query: Vector, k: int, candidates: npt.NDArray[np.int64] | None
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (seq, inner product) pairs, best first, among ``candidates`` (None: all live)."""
        live = self._index.ntotal - len(self._stale)
        wanted = min(k, live if candidates is None else len(candidates))
        if wanted <= 0:
            return []
        found = self._search_index(query, k, candidates)
        if len(found) < wanted:  # HNSW missed some of a selective filter's few matches
            found = self._search_exactly(query, k, candidates)
        return found

    def _search_index(
        self, query: Vector, k: int, candidates: npt.NDArray[np.int64] | None
    ) -> list[tuple[int, float]]:
        selector: faiss.IDSelector | None = None
        inner = None  # faiss selectors hold raw pointers: keep both alive through the search
        if candidates is not None:
            selector = faiss.IDSelectorBatch(candidates)
        elif self._stale:
            inner = faiss.IDSelectorBatch(np.fromiter(self._stale, dtype=np.int64))
            selector = faiss.IDSelectorNot(inner)
        if self._hnsw is None:
            params = faiss.SearchParameters()
        else:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # absent from faiss 1.15.1's stubs
            params.efSearch = max(k, self._hnsw.ef_search)
        params.sel = selector
        with _one_thread():
            scores, seqs = self._index.search(query.reshape(1, -1), k, params=params)
        return [(int(seq), float(score)) for seq, score in zip(seqs[0], scores[0], strict=True) if seq >= 0]

    def _search_exactly(
        self, query: Vector, k: int, candidates: npt.NDArray[np.int64] | None
    ) -> list[tuple[int, float]]:
        if candidates is None:
            every = faiss.vector_to_array(self._index.id_map)
            candidates = np.setdiff1d(every, np.fromiter(self._stale, dtype=np.int64))
        scores = self._index.reconstruct_batch(candidates) @ query
        best = np.argsort(-scores, kind="stable")[:k]
        return [(int(candidates[i]), float(scores[i])) for i in best]


class EmbeddedIndex:
    """A ``VectorIndex`` in one SQLite file; see the module docstring for how it searches."""

    def __init__(
        self, store: _Store, *, alias: str, name: str, dim: int, space_type: SpaceType = Settings.space_type
    ) -> None:
        self._store = store
        self._alias = alias
        self._name = name
        self._dim = dim
        self._space_type = space_type

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        prefix: str,
        model_id: str,
        dim: int,
        space_type: SpaceType = Settings.space_type,
        hnsw: HnswParams | None = None,
    ) -> EmbeddedIndex:
        """A handle on the alias ``<prefix>-<model_id>`` in the SQLite file ``path`` (created if missing)."""
        alias = alias_name(prefix, model_id)
        store = _Store(path, hnsw or HnswParams())
        return cls(store, alias=alias, name=alias, dim=dim, space_type=space_type)

    @classmethod
    def connect(cls, settings: Settings, *, model_id: str, dim: int) -> EmbeddedIndex:
        """The embedded index that ``settings`` describe, for the model ``model_id``."""
        hnsw = HnswParams(
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
        )
        return cls.open(
            settings.embedded_index_path,
            prefix=settings.index_prefix,
            model_id=model_id,
            dim=dim,
            space_type=settings.space_type,
            hnsw=hnsw,
        )

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self._name

    def ensure(self) -> str:
        with self._store.writing() as conn:
            if self._name == self._alias:
                row = conn.execute("SELECT target FROM aliases WHERE alias = ?", (self._alias,)).fetchone()
                if row is not None:
                    self._check_dimension(conn, row[0])
                    return str(row[0])
                target = version_name(self._alias, 1)
                conn.execute("INSERT OR IGNORE INTO indexes (name, dim) VALUES (?, ?)", (target, self._dim))
                conn.execute("INSERT INTO aliases (alias, target) VALUES (?, ?)", (self._alias, target))
            else:
                target = self._name
                conn.execute("INSERT OR IGNORE INTO indexes (name, dim) VALUES (?, ?)", (target, self._dim))
            self._check_dimension(conn, target)
        return target

    def upsert(self, docs: Sequence[Document]) -> WriteResult:
        latest = {doc.image_id: doc for doc in docs}  # a batch may repeat an id: the last one wins
        vectors = {image_id: unit_vector(doc.vector, dim=self._dim) for image_id, doc in latest.items()}
        removed: list[int] = []
        added: list[tuple[int, Vector]] = []
        with self._store.lock:  # faiss follows the commit before any other thread can search
            with self._store.writing() as conn:
                target = self._target(conn)
                generation = self._store.changed(conn, target)
                for image_id, doc in latest.items():
                    removed += self._delete_row(conn, target, image_id)
                    added.append((self._insert_row(conn, target, doc, vectors[image_id]), vectors[image_id]))
            self._store.keep_in_step(target, generation=generation, removed=removed, added=added)
        return WriteResult(succeeded=tuple(latest))

    def delete(self, image_ids: Sequence[str]) -> WriteResult:
        removed: list[int] = []
        with self._store.lock:
            with self._store.writing() as conn:
                target = self._target(conn)
                generation = self._store.changed(conn, target)
                for image_id in image_ids:
                    removed += self._delete_row(conn, target, image_id)
            self._store.keep_in_step(target, generation=generation, removed=removed, added=[])
        return WriteResult(succeeded=tuple(dict.fromkeys(image_ids)))

    def get(self, image_id: str) -> Document:
        with self._store.reading() as conn:
            row = conn.execute(
                "SELECT metadata, vector FROM documents WHERE index_name = ? AND image_id = ?",
                (self._target(conn), image_id),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no image with id {image_id!r} in index {self._name!r}")
        vector = np.frombuffer(row[1], dtype=np.float32).copy()
        return Document(
            image_id=image_id, vector=vector, metadata=ImageMetadata.from_source(json.loads(row[0]))
        )

    def lookup(self, image_ids: Sequence[str]) -> dict[str, IndexedImage]:
        ids = list(dict.fromkeys(image_ids))
        found: dict[str, IndexedImage] = {}
        with self._store.reading() as conn:
            target = self._target(conn)
            for start in range(0, len(ids), _LOOKUP_PAGE):  # SQLite caps a statement's parameters
                page = ids[start : start + _LOOKUP_PAGE]
                rows = conn.execute(
                    "SELECT image_id, metadata FROM documents WHERE index_name = ? AND image_id IN"
                    f" ({', '.join('?' * len(page))})",
                    (target, *page),
                ).fetchall()
                for image_id, metadata in rows:
                    found[image_id] = IndexedImage(
                        image_id=image_id, metadata=ImageMetadata.from_source(json.loads(metadata))
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
        query = unit_vector(vector, dim=self._dim)
        with self._store.reading() as conn:
            target = self._target(conn)
            candidates = self._candidates(conn, target, filters, exclude_ids)
            found = self._store.neighbours(target, self._dim).search(query, k, candidates)
            hits = self._hits(conn, found)
        if min_similarity is not None:
            hits = [hit for hit in hits if hit.similarity >= min_similarity]
        return hits

    def vectors_by_content(self, content_ids: Collection[str], *, model_id: str) -> dict[str, Vector]:
        wanted = sorted(set(content_ids))
        found: dict[str, Vector] = {}
        with self._store.reading() as conn:
            target = self._target(conn)
            for start in range(0, len(wanted), _MAX_PARAMETERS):
                chunk = wanted[start : start + _MAX_PARAMETERS]
                rows = conn.execute(
                    f"SELECT {_CONTENT}, vector FROM documents WHERE index_name = ?"
                    f" AND {_CONTENT} IN ({', '.join('?' * len(chunk))})"
                    " AND json_extract(metadata, '$.model_id') = ?",
                    (target, *chunk, model_id),
                ).fetchall()
                found |= {content: np.frombuffer(blob, dtype=np.float32).copy() for content, blob in rows}
        return found

    def with_content(self, content_id: str, *, limit: int) -> list[IndexedImage]:
        with self._store.reading() as conn:
            rows = conn.execute(
                f"SELECT image_id, metadata FROM documents WHERE index_name = ? AND {_CONTENT} = ?"
                " ORDER BY image_id LIMIT ?",
                (self._target(conn), content_id, limit),
            ).fetchall()
        return [
            IndexedImage(image_id=image_id, metadata=ImageMetadata.from_source(json.loads(metadata)))
            for image_id, metadata in rows
        ]

    def count(self) -> int:
        with self._store.reading() as conn:
            row = conn.execute("SELECT COUNT(*) FROM documents WHERE index_name = ?", (self._target(conn),))
            return int(row.fetchone()[0])

    def scan(self, *, page_size: int = SCAN_PAGE_SIZE) -> Iterator[IndexedImage]:
        after = ""  # keyset paging on the (index_name, image_id) unique index: each page is one seek
        while True:
            with self._store.reading() as conn:
                rows = conn.execute(
                    "SELECT image_id, metadata FROM documents WHERE index_name = ? AND image_id > ?"
                    " ORDER BY image_id LIMIT ?",
                    (self._target(conn), after, page_size),
                ).fetchall()
            for image_id, metadata in rows:
                yield IndexedImage(
                    image_id=image_id, metadata=ImageMetadata.from_source(json.loads(metadata))
                )
            if len(rows) < page_size:
                return
            after = rows[-1][0]

    def close(self) -> None:
        self._store.close()

    def _target(self, conn: sqlite3.Connection) -> str:
        """The concrete index this handle reads and writes, or ``NotFoundError`` before ``ensure``."""
        if self._name == self._alias:
            row = conn.execute("SELECT target FROM aliases WHERE alias = ?", (self._alias,)).fetchone()
        else:
            row = conn.execute("SELECT name FROM indexes WHERE name = ?", (self._name,)).fetchone()
        if row is None:
            raise NotFoundError(f"index {self._name!r} does not exist; call ensure() first")
        return str(row[0])

    def _check_dimension(self, conn: sqlite3.Connection, target: str) -> None:
        stored = conn.execute("SELECT dim FROM indexes WHERE name = ?", (target,)).fetchone()[0]
        if stored != self._dim:
            raise ConfigError(f"index {target!r} holds {stored}-dimensional vectors, not {self._dim}")

    @staticmethod
    def _insert_row(conn: sqlite3.Connection, target: str, doc: Document, vector: Vector) -> int:
        cursor = conn.execute(
            "INSERT INTO documents (index_name, image_id, label, key, metadata, vector)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                target,
                doc.image_id,
                doc.metadata.label,
                doc.metadata.key,
                json.dumps(doc.metadata.to_source()),
                vector.tobytes(),
            ),
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def _delete_row(conn: sqlite3.Connection, target: str, image_id: str) -> list[int]:
        rows = conn.execute(
            "DELETE FROM documents WHERE index_name = ? AND image_id = ? RETURNING seq", (target, image_id)
        ).fetchall()
        return [int(row[0]) for row in rows]

    @staticmethod
    def _candidates(
        conn: sqlite3.Connection, target: str, filters: Filters | None, exclude_ids: Collection[str]
    ) -> npt.NDArray[np.int64] | None:
        """The seqs a restricted search may return, or None when every document may be returned."""
        clauses, params = ["index_name = ?"], [target]
        if filters is not None and filters.label is not None:
            clauses.append("label = ?")
            params.append(filters.label)
        if filters is not None and filters.key_prefix:
            clauses.append("substr(key, 1, ?) = ?")  # not LIKE: keys may contain % and _
            params += [str(len(filters.key_prefix)), filters.key_prefix]
        if exclude_ids:
            clauses.append(f"image_id NOT IN ({', '.join('?' * len(exclude_ids))})")
            params += list(exclude_ids)
        if len(clauses) == 1:
            return None
        rows = conn.execute(f"SELECT seq FROM documents WHERE {' AND '.join(clauses)}", params).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def _hits(self, conn: sqlite3.Connection, found: list[tuple[int, float]]) -> list[Hit]:
        if not found:
            return []
        marks = ", ".join("?" * len(found))
        rows = conn.execute(
            f"SELECT seq, image_id, metadata FROM documents WHERE seq IN ({marks})", [seq for seq, _ in found]
        ).fetchall()
        by_seq = {row[0]: (row[1], row[2]) for row in rows}
        hits = []
        for seq, inner_product in found:
            image_id, metadata = by_seq[seq]
            similarity = min(1.0, max(-1.0, inner_product))  # unit vectors: rounding only
            hits.append(
                Hit(
                    image_id=image_id,
                    similarity=similarity,
                    score=mapping.score_from_similarity(similarity, space_type=self._space_type),
                    metadata=ImageMetadata.from_source(json.loads(metadata)),
                )
            )
        return hits


class EmbeddedCollection:
    """An ``IndexCollection`` in the same SQLite file: each index's model and the pointers are rows,
    changed in one transaction each."""

    def __init__(self, store: _Store, *, prefix: str, space_type: SpaceType = Settings.space_type) -> None:
        self._store = store
        self._prefix = prefix
        self._space_type = space_type

    @classmethod
    def connect(cls, settings: Settings) -> EmbeddedCollection:
        hnsw = HnswParams(
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
        )
        store = _Store(settings.embedded_index_path, hnsw)
        return cls(store, prefix=settings.index_prefix, space_type=settings.space_type)

    def pointers(self) -> Pointers:
        found = self._pointed(POINTERS)  # one read: a consistent view of all three
        return Pointers(
            serving=next(iter(found["serving"]), None),
            writing=found["writing"],
            previous=next(iter(found["previous"]), None),
        )

    def pointed(self, pointer: Pointer) -> tuple[IndexInfo, ...]:
        return self._pointed((pointer,))[pointer]

    def _pointed(self, pointers: Sequence[Pointer]) -> dict[Pointer, tuple[IndexInfo, ...]]:
        with self._store.reading() as conn:
            rows = conn.execute(
                "SELECT p.pointer, p.target, m.model_id, m.model_uri, i.dim FROM pointers p"
                " JOIN indexes i ON i.name = p.target LEFT JOIN models m ON m.index_name = p.target"
                f" WHERE p.prefix = ? AND p.pointer IN ({','.join('?' * len(pointers))}) ORDER BY p.target",
                (self._prefix, *pointers),
            ).fetchall()
        return {
            pointer: tuple(
                IndexInfo(name=target, model_id=model_id, model_uri=model_uri, dim=dim)
                for each, target, model_id, model_uri, dim in rows
                if each == pointer
            )
            for pointer in pointers
        }

    def create(self, *, model_id: str, model_uri: str, dim: int) -> IndexInfo:
        alias = alias_name(self._prefix, model_id)
        name = EmbeddedIndex(
            self._store, alias=alias, name=alias, dim=dim, space_type=self._space_type
        ).ensure()
        with self._store.writing() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO models (index_name, model_id, model_uri) VALUES (?, ?, ?)",
                (name, model_id, model_uri),
            )
        return IndexInfo(name=name, model_id=model_id, model_uri=model_uri, dim=dim)

    def index(self, info: IndexInfo) -> EmbeddedIndex:
        alias = alias_name(self._prefix, info.model_id)
        return EmbeddedIndex(
            self._store, alias=alias, name=info.name, dim=info.dim, space_type=self._space_type
        )

    def refresh(self, name: str) -> None:
        """Nothing to do: a SQLite transaction is visible once committed."""

    def add_writer(self, name: str) -> None:
        with self._store.writing() as conn:
            self._point(conn, "writing", name)

    def remove_writer(self, name: str) -> None:
        with self._store.writing() as conn:
            conn.execute(
                "DELETE FROM pointers WHERE prefix = ? AND pointer = 'writing' AND target = ?",
                (self._prefix, name),
            )

    def serve(self, name: str, *, remember: bool = True) -> None:
        with self._store.writing() as conn:
            serving = conn.execute(
                "SELECT target FROM pointers WHERE prefix = ? AND pointer = 'serving'", (self._prefix,)
            ).fetchone()
            if serving is not None and serving[0] != name:
                conn.execute(
                    "DELETE FROM pointers WHERE prefix = ? AND pointer IN ('serving', 'previous')",
                    (self._prefix,),
                )
                if remember:
                    self._point(conn, "previous", serving[0])
            self._point(conn, "serving", name)

    def drop(self, name: str) -> None:
        with self._store.lock:
            with self._store.writing() as conn:
                still = conn.execute(
                    "SELECT 1 FROM pointers WHERE target = ? AND pointer IN ('serving', 'writing')", (name,)
                ).fetchone()
                if still is not None:
                    raise ConfigError(
                        f"index {name!r} still serves or takes writes; switch or stop writing first"
                    )
                conn.execute("DELETE FROM pointers WHERE target = ?", (name,))
                conn.execute("DELETE FROM documents WHERE index_name = ?", (name,))
                conn.execute("DELETE FROM models WHERE index_name = ?", (name,))
                conn.execute("DELETE FROM aliases WHERE target = ?", (name,))
                conn.execute("DELETE FROM indexes WHERE name = ?", (name,))
            self._store.forget(name)

    def close(self) -> None:
        self._store.close()

    def _point(self, conn: sqlite3.Connection, pointer: Pointer, name: str) -> None:
        if conn.execute("SELECT 1 FROM indexes WHERE name = ?", (name,)).fetchone() is None:
            raise NotFoundError(f"index {name!r} does not exist")
        conn.execute(
            "INSERT OR IGNORE INTO pointers (prefix, pointer, target) VALUES (?, ?, ?)",
            (self._prefix, pointer, name),
        )


class EmbeddedFailureLog:
    """A ``FailureLog`` in a table of the embedded index's SQLite file."""

    def __init__(self, store: _Store) -> None:
        self._store = store

    @classmethod
    def open(cls, path: Path) -> EmbeddedFailureLog:
        return cls(_Store(path, HnswParams()))

    def ensure(self) -> None:
        """Nothing to do: the table is created with the file."""

    def close(self) -> None:
        self._store.close()

    def record(self, failure: FailureRecord) -> None:
        with self._store.writing() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO failures (key, etag, reason_code, message, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    failure.key,
                    failure.etag or "",
                    failure.reason_code,
                    failure.message,
                    failure.at.astimezone(UTC).isoformat(),  # one offset, so text order is time order
                ),
            )

    def recent(self, limit: int) -> list[FailureRecord]:
        with self._store.reading() as conn:
            rows = conn.execute(
                "SELECT key, etag, reason_code, message, at FROM failures ORDER BY at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            FailureRecord(
                key=key, etag=etag or None, reason_code=code, message=message, at=datetime.fromisoformat(at)
            )
            for key, etag, code, message, at in rows
        ]
