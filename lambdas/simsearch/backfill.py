"""Backfill: index every object already under ``s3://bucket/prefix``, with the ingestion service itself.

Each listed key goes through ``IngestionService.sync``, so a backfill decides exactly as live ingestion
does and may run beside it. An object whose ETag the index already holds for this model is
``unchanged``: a backfill is idempotent, and an interrupted one resumes by running it again (the
objects done cost a HEAD and an index read each, no download or inference).

Batches of ``batch_size`` keys: the service downloads and decodes a batch's objects in parallel and
embeds them in one inference call; two batches are in flight, so the downloads of one overlap the
inference of the other.

    python -m simsearch.backfill s3://bucket/prefix     # settings from SIMSEARCH_* variables
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

from simsearch.errors import InvalidRequestError
from simsearch.ingestion import Change, Ingestion, KeyOutcome, OutcomeKind

if TYPE_CHECKING:
    from simsearch.settings import Settings
    from simsearch.storage import ImageStore, StoredObject

DEFAULT_BATCH_SIZE = 32
BATCHES_IN_FLIGHT = 2


@dataclass(frozen=True, kw_only=True)
class BackfillSummary:
    """How many objects ended in each outcome, and the ones that did not make it (failed or to retry)."""

    counts: Counter[OutcomeKind]
    problems: tuple[KeyOutcome, ...]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def complete(self) -> bool:
        """Nothing was left for a retry: running the backfill again would change nothing."""
        return self.counts["retry"] == 0

    def report(self) -> str:
        """The counts, a line per object that did not make it, and what to do if some may still."""
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()))
        lines = [f"{self.total} objects: {counts}" if self.total else "no objects"]
        lines += [f"  {p.kind} {p.key}: {p.reason} {p.detail}" for p in self.problems]
        if not self.complete:
            lines.append(
                "some objects failed transiently: run the backfill again to finish (done ones are skipped)"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """The counts and the problems, for ``--json`` output."""
        problems = [
            {"key": p.key, "kind": p.kind, "reason": p.reason, "detail": p.detail} for p in self.problems
        ]
        return {"counts": dict(self.counts), "problems": problems}


def backfill(
    service: Ingestion,
    images: ImageStore,
    *,
    bucket: str,
    prefix: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[Sequence[KeyOutcome]], None] | None = None,
) -> BackfillSummary:
    """Index what is under ``s3://bucket/prefix``; ``on_batch`` sees each batch's outcomes (progress)."""
    if batch_size < 1:
        raise InvalidRequestError(f"batch_size is {batch_size}; it must be at least 1")
    counts: Counter[OutcomeKind] = Counter()
    problems: list[KeyOutcome] = []

    def tally(outcomes: Sequence[KeyOutcome]) -> None:
        counts.update(outcome.kind for outcome in outcomes)
        problems.extend(outcome for outcome in outcomes if outcome.kind in ("failed", "retry"))
        if on_batch is not None:
            on_batch(outcomes)

    with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT, thread_name_prefix="backfill") as runner:
        in_flight: deque[Future[list[KeyOutcome]]] = deque()
        for batch in _batches(images.list(bucket, prefix), batch_size):
            changes = [Change(bucket=obj.bucket, key=obj.key) for obj in batch]
            in_flight.append(runner.submit(service.sync, changes))
            if len(in_flight) >= BATCHES_IN_FLIGHT:
                tally(in_flight.popleft().result())
        while in_flight:
            tally(in_flight.popleft().result())
    return BackfillSummary(counts=counts, problems=tuple(problems))


def backfill_bucket(
    settings: Settings,
    images: ImageStore,
    *,
    bucket: str,
    prefix: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[Sequence[KeyOutcome]], None] | None = None,
) -> BackfillSummary:
    """A backfill as an operator runs one: the deployment's model attached first (what its bootstrap
    does: its index made and taking writes), then every writing index filled from the bucket."""
    from contextlib import closing

    from simsearch import bootstrap

    bootstrap.attach(settings)
    with closing(bootstrap.ingestion(settings, images=images)) as service:
        return backfill(
            service, images, bucket=bucket, prefix=prefix, batch_size=batch_size, on_batch=on_batch
        )


def _batches(objects: Iterable[StoredObject], size: int) -> Iterator[list[StoredObject]]:
    iterator = iter(objects)
    while batch := list(islice(iterator, size)):
        yield batch


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``)."""
    scheme, _, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise InvalidRequestError(f"{url!r} is not an S3 URL; expected s3://bucket or s3://bucket/prefix")
    return bucket, prefix


def main(argv: Sequence[str] | None = None) -> int:
    """Backfill from the command line; exit status 1 if some objects are left for a re-run."""
    import boto3  # the CLI's dependencies, not the core's
    from tqdm import tqdm

    from simsearch.settings import Settings
    from simsearch.storage import S3ImageStore

    parser = argparse.ArgumentParser(
        prog="python -m simsearch.backfill", description="Index every image under an S3 prefix."
    )
    parser.add_argument("url", help="s3://bucket/prefix to index")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args(argv)
    bucket, prefix = parse_s3_url(args.url)
    settings = Settings.from_env()
    images = S3ImageStore(boto3.client("s3", region_name=settings.aws_region))
    with tqdm(unit="image", desc=f"s3://{bucket}/{prefix}") as bar:
        summary = backfill_bucket(
            settings,
            images,
            bucket=bucket,
            prefix=prefix,
            batch_size=args.batch_size,
            on_batch=lambda outcomes: bar.update(len(outcomes)),
        )
    print(summary.report())
    return 0 if summary.complete else 1


if __name__ == "__main__":
    sys.exit(main())
