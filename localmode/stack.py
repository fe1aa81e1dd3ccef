"""The whole system on one machine: moto's S3 and SQS, the ingest worker, the query API and the web page.

Everything runs the code that runs in AWS: ``localmode.harness.deployed`` configures the handlers as
the CDK app configures the functions and points their boto3 clients at the moto server, uploads notify
the queue as ``infra/ingestion.py`` sets it up, ``QueueWorker`` feeds the ingest handler as Lambda's
event source does, and ``ApiGatewayServer`` feeds the query handler as API Gateway does.

moto keeps the bucket in memory, while the index persists (the embedded index in a file, or
``OPENSEARCH_URL``): each start puts the images folder back into the bucket before the bucket notifies
the queue, and reconciles the index with it (``localmode.reconcile``). Documents whose images are gone
are removed; only the images the index does not hold at their ETag go through ingestion again, so a
restart costs no inference for what was indexed, and a kill -9 half-way through loses nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

from localmode import api_gateway, worker
from localmode.cloud import VISIBILITY_TIMEOUT_S, LocalCloud, moto_server, notify, provision
from localmode.harness import deployed
from localmode.ports import ensure_free
from localmode.reconcile import Reconciled, reconcile
from localmode.static_site import with_static_site
from simsearch.formats import is_image_name, media_type_for
from simsearch.settings import Settings

if TYPE_CHECKING:
    from localmode.harness import Settled

UPLOAD_THREADS = 8
UPLOAD_CHUNK = 50
MAX_BACKLOG = 100
"""How far uploads may run ahead of ingestion; moto's receive takes 0.1 s with 100 waiting messages
and 2.7 s with 1,800 (measured here), so a folder uploaded at once would crawl through the queue."""
CACHE_DIR = Path(".cache/localmode")


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Where the local stack listens and what it runs; ``port=0`` picks a free port (tests).

    ``images`` is what the bucket holds at start (the images folder, by key): moto forgets the bucket
    when it stops, so each start puts them back before reconciling the index with them.
    """

    settings: Settings
    host: str = "127.0.0.1"
    api_port: int = 8000
    s3_port: int = 8001
    verbose: bool = False
    images: Mapping[str, Traversable] = field(default_factory=dict)


def index_path_for(images: Path | None, *, cache_dir: Path = CACHE_DIR) -> Path:
    """One embedded index per image folder, so switching ``IMAGES`` never mixes two collections."""
    if images is None:
        return cache_dir / "samples" / "index.sqlite"
    resolved = images.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return cache_dir / f"{resolved.name or 'root'}-{digest}" / "index.sqlite"


class IngestProgress:
    """How many S3 records the worker has settled for good; ``wait_for`` blocks until enough have."""

    def __init__(self) -> None:
        self._settled = 0
        self._retried = 0
        self._changed = threading.Condition()

    def record(self, settled: Settled) -> None:
        with self._changed:
            self._settled += settled.acknowledged_records
            self._retried += settled.retried_messages
            self._changed.notify_all()

    @property
    def settled(self) -> int:
        return self._settled

    @property
    def retried(self) -> int:
        return self._retried

    def wait_for(
        self, count: int, *, timeout: float | None = None, on_change: Callable[[int], None] | None = None
    ) -> bool:
        """Block until ``count`` records are settled (True) or ``timeout`` seconds pass (False)."""
        with self._changed:
            while self._settled < count:
                if not self._changed.wait(timeout):
                    return False
                if on_change is not None:
                    on_change(self._settled)
        return True


@dataclass(frozen=True, kw_only=True)
class LocalStack:
    """A running local stack: its API (and page) URL, the moto resources, the ingest progress, and
    what starting did to make the index mirror the bucket (``to_index`` is for the caller to upload)."""

    url: str
    cloud: LocalCloud
    settings: Settings
    progress: IngestProgress
    reconciled: Reconciled

    @property
    def model_id(self) -> str:
        """The model this stack's functions carry (the one ``--model-dir`` names)."""
        from simsearch.manifest import ModelManifest

        return ModelManifest.load(self.settings.model_dir).model_id


@contextmanager
def started(config: StackConfig) -> Iterator[LocalStack]:
    """Start moto, configure the handlers, start the worker and the API; stop it all when the block ends.

    Before the bucket notifies anyone, ``config.images`` are put back into it and the index is
    reconciled with it (``localmode.reconcile``): what was indexed and unchanged costs nothing.
    """
    ensure_free(config.host, config.api_port, role=api_gateway.API_ROLE)  # now, not after the model loads
    with ExitStack() as stack:
        endpoint = stack.enter_context(moto_server(host=config.host, port=config.s3_port))
        settings = config.settings
        cloud = provision(
            endpoint, bucket=settings.images_bucket, region=settings.aws_region, notifying=False
        )
        upload(cloud, config.images)
        notify(cloud)
        deployment = stack.enter_context(deployed(settings, cloud=cloud, quiet=not config.verbose))
        deployment.cold_start("ingest")  # loads the model and creates the index: /health answers at once
        reconciled = _reconciled(settings, cloud)
        from handlers import ingest, query

        progress = IngestProgress()
        stack.enter_context(
            worker.running(worker.QueueWorker(cloud, ingest.handler, on_settled=progress.record))
        )
        server = stack.enter_context(
            api_gateway.running(with_static_site(query.handler), host=config.host, port=config.api_port)
        )
        yield LocalStack(
            url=server.url, cloud=cloud, settings=settings, progress=progress, reconciled=reconciled
        )


def _reconciled(settings: Settings, cloud: LocalCloud) -> Reconciled:
    """Reconcile the indexes of ``settings`` with ``cloud``'s bucket, through handles of their own."""
    from simsearch.errors import IndexUnavailableError
    from simsearch.index import connect_collection
    from simsearch.storage import S3ImageStore

    images = S3ImageStore(cloud.client("s3"))
    with closing(connect_collection(settings)) as collection, closing(images):
        pointers = collection.pointers()
        if pointers.serving is None:
            raise IndexUnavailableError("no index serves after the deployment attached its model")
        others = [collection.index(info) for info in pointers.writing if info != pointers.serving]
        return reconcile(
            collection.index(pointers.serving),
            images,
            bucket=cloud.bucket,
            ignored_prefix=settings.query_upload_prefix,
            also=others,
        )


def folder_images(folder: Path) -> dict[str, Path]:
    """Every image file under ``folder`` by its relative path: ``<label>/<file>`` layouts give labels."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and is_image_name(path.name)
    }


def upload(
    cloud: LocalCloud,
    images: Mapping[str, Traversable],
    *,
    on_upload: Callable[[str], None] | None = None,
    paced_by: IngestProgress | None = None,
) -> int:
    """Put every image into the bucket (in parallel); each upload notifies the queue. Returns the count.

    With ``paced_by``, uploads stay at most ``MAX_BACKLOG`` notifications ahead of ingestion: moto's
    SQS looks at every waiting message on each receive, so a long queue slows the worker down.
    """
    s3 = cloud.client("s3")
    items = list(images.items())
    already = paced_by.settled if paced_by else 0

    def put(item: tuple[str, Traversable]) -> str:
        key, path = item
        content_type = media_type_for(path.name) or "application/octet-stream"
        s3.put_object(Bucket=cloud.bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)
        return key

    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="upload") as pool:
        for start in range(0, len(items), UPLOAD_CHUNK):
            chunk = items[start : start + UPLOAD_CHUNK]
            if paced_by is not None:  # best effort: a message being retried must not stop the uploads
                paced_by.wait_for(already + start + len(chunk) - MAX_BACKLOG, timeout=VISIBILITY_TIMEOUT_S)
            for key in pool.map(put, chunk):
                if on_upload is not None:
                    on_upload(key)
    return len(items)
