"""``imgsearch`` (also ``python -m localmode.cli``): the local stack, ingestion, search and failures.

Each subcommand is a ``Command`` in ``COMMANDS``: a name, a one-line help, a function that adds its
arguments and one that runs it and returns the exit status (0 ok, 1 failure; argparse exits with 2
on a usage error). Heavy imports (the model runtime, boto3) happen inside ``run`` so ``--help``
answers at once.

    imgsearch serve --images ~/Pictures          # the local stack on http://127.0.0.1:8000
    imgsearch search photo.jpg -k 5 --label cats  # the running stack, or --api URL --api-key KEY
    imgsearch duplicates --near                   # exact and near duplicates, and the bytes they take
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import evaluation
from infra import preflight
from localmode import discovery, duplicates, reindexing
from localmode.errors import CommandFailed
from localmode.ports import PortInUseError
from model import whiten
from simsearch.errors import SimsearchError
from simsearch.formats import FORMATS, IMAGE_SUFFIXES, media_type_for

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from localmode.stack import LocalStack
    from simsearch.settings import Settings

DEFAULT_MODEL_DIR = Path("build/models/mobilenet_v2")  # what `make model` builds
DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_ARCH = "mobilenet_v2"
SEARCH_TIMEOUT_S = 60


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# serve ---------------------------------------------------------------------------------------------


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images",
        type=Path,
        help="folder of images to upload (<label>/<file> gives labels); default: sample photographs",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="the API and the web page")
    parser.add_argument("--s3-port", type=int, default=8001, help="moto's S3 and SQS")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument(
        "--index-path", type=Path, help="embedded index file (default: one per image folder under .cache)"
    )


def _serve(args: argparse.Namespace) -> int:
    from localmode.harness import local_settings
    from localmode.stack import StackConfig, folder_images, index_path_for, started
    from model.images import sample_photos

    if args.images is not None and not args.images.is_dir():
        raise CommandFailed(f"--images {args.images} is not a folder")
    settings = local_settings(
        model_dir=args.model_dir.resolve(),
        index_path=(args.index_path or index_path_for(args.images)).resolve(),
        opensearch_url=os.environ.get("OPENSEARCH_URL", ""),
    )
    images = folder_images(args.images) if args.images else sample_photos()
    if not images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise CommandFailed(f"no images ({suffixes}) under {args.images}")
    where = settings.opensearch_url or settings.embedded_index_path
    print(f"starting the local stack (index: {where}) …", flush=True)
    config = StackConfig(
        settings=settings,
        host=args.host,
        api_port=args.port,
        s3_port=args.s3_port,
        verbose=args.verbose,
        images=images,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # kill, systemd, Docker, CI: stop as Ctrl-C stops
    try:
        with started(config) as stack, discovery.announced(_running(stack)):
            print(f"S3 and SQS (moto) at {stack.cloud.endpoint}", flush=True)
            if report := stack.reconciled.report():
                print(report, flush=True)
            print(f"\n    Open {stack.url} to search (Ctrl-C stops everything)\n", flush=True)
            _upload_and_wait(
                stack, {key: images[key] for key in stack.reconciled.to_index}, total=len(images)
            )
            threading.Event().wait()
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
    except PortInUseError as error:
        flag = "--port" if error.port == args.port else "--s3-port"
        raise CommandFailed(f"{error} with {flag}") from error
    return 0


def _interrupt(_signal: int, _frame: object) -> None:
    """SIGTERM's default ends the process on the spot, leaving the note that points the other commands
    at a stack no longer there; raised as Ctrl-C, it closes the stack the same way."""
    raise KeyboardInterrupt


def _running(stack: LocalStack) -> discovery.RunningStack:
    return discovery.RunningStack(url=stack.url, cloud=stack.cloud, settings=stack.settings)


def _upload_and_wait(stack: LocalStack, images: Mapping[str, Traversable], *, total: int) -> None:
    """Two progress bars: uploads (paced by ingestion) and the images the worker has settled.

    ``images`` are those the index did not hold at start, of ``total`` in the bucket.

    The page works meanwhile; a message that keeps failing ends in the dead-letter queue and leaves
    the second bar short of its total, which Ctrl-C ends like any other wait.
    """
    from tqdm import tqdm

    from localmode.stack import upload

    count = len(images)
    failures: list[Exception] = []
    with (
        tqdm(total=count, unit="image", desc="upload", position=0) as uploaded,
        tqdm(total=count, unit="image", desc="ingest", position=1) as ingested,
    ):

        def upload_all() -> None:
            try:
                upload(stack.cloud, images, on_upload=lambda _: uploaded.update(), paced_by=stack.progress)
            except Exception as error:  # raised again on the main thread, which reports it
                failures.append(error)

        def follow(settled: int) -> None:
            ingested.update(min(settled, count) - ingested.n)

        # a daemon thread: Ctrl-C must not wait for the remaining uploads
        threading.Thread(target=upload_all, name="uploader", daemon=True).start()
        while not stack.progress.wait_for(count, timeout=1, on_change=follow):
            if failures:
                raise failures[0]
    health = _get_json(f"{stack.url}/health", api_key=None)
    print(f"{health['documents']} images searchable with {health['model_id']} at {stack.url}", flush=True)
    if health["documents"] < total:
        print("some images could not be indexed: `imgsearch failures` says why", flush=True)
    if health["model_id"] != stack.model_id:
        print(
            f"model {stack.model_id} is new here: its index takes every upload beside the serving one; "
            "`imgsearch backfill` fills it with the rest, gates and switches (queries keep being answered)",
            flush=True,
        )


# ingest --------------------------------------------------------------------------------------------


def _configure_ingest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a folder (uploaded to the running local stack) or s3://bucket/prefix")
    parser.add_argument("--prefix", default="", help="folder: the key prefix to upload under")
    parser.add_argument("--endpoint-url", help="s3://: an S3-compatible endpoint (default: AWS)")
    parser.add_argument("--batch-size", type=int, default=32)


def _ingest(args: argparse.Namespace) -> int:
    """Backfill: a folder is uploaded into the local stack's bucket first, then indexed like an S3 prefix."""
    import boto3

    from simsearch.backfill import parse_s3_url

    if args.source.startswith("s3://"):
        bucket, prefix = parse_s3_url(args.source)
        settings = discovery.target_settings()
        s3 = boto3.client("s3", region_name=settings.aws_region, endpoint_url=args.endpoint_url)
    else:
        running = discovery.require_running()
        bucket, prefix, settings = running.cloud.bucket, args.prefix, running.settings
        s3 = running.cloud.client("s3")
        _upload_folder(running, Path(args.source), prefix=prefix)
    return _backfill(
        settings, s3, bucket=bucket, prefix=prefix, batch_size=args.batch_size, as_json=args.json
    )


def _upload_folder(running: discovery.RunningStack, folder: Path, *, prefix: str) -> None:
    from tqdm import tqdm

    from localmode.stack import folder_images, upload

    if not folder.is_dir():
        raise CommandFailed(f"{folder} is neither a folder nor an s3:// URL")
    images = {prefix + key: path for key, path in folder_images(folder).items()}
    with tqdm(total=len(images), unit="image", desc="upload", file=sys.stderr) as bar:
        upload(running.cloud, images, on_upload=lambda _: bar.update())


def _backfill(
    settings: Settings, s3: Any, *, bucket: str, prefix: str, batch_size: int, as_json: bool
) -> int:
    from tqdm import tqdm

    from simsearch.backfill import backfill_bucket
    from simsearch.storage import S3ImageStore

    images = S3ImageStore(s3)
    with tqdm(unit="image", desc=f"index s3://{bucket}/{prefix}", file=sys.stderr) as bar:
        summary = backfill_bucket(
            settings,
            images,
            bucket=bucket,
            prefix=prefix,
            batch_size=batch_size,
            on_batch=lambda outcomes: bar.update(len(outcomes)),
        )
    print(json.dumps(summary.to_json(), indent=2) if as_json else summary.report())
    return 0 if not summary.problems else 1


# search --------------------------------------------------------------------------------------------


def _configure_search(parser: argparse.ArgumentParser) -> None:
    formats = ", ".join(image_format.pillow for image_format in FORMATS)
    parser.add_argument("image", type=Path, help=f"the query image ({formats})")
    parser.add_argument("-k", type=int, default=10, help="how many results (1-100)")
    parser.add_argument("--label", help="only images with this label")
    parser.add_argument(
        "--api", help=f"a deployed API's base URL (default: the running local stack, {DEFAULT_API})"
    )
    parser.add_argument("--api-key", default=os.environ.get("IMGSEARCH_API_KEY"), help="sent as x-api-key")


def _search(args: argparse.Namespace) -> int:
    import requests

    try:
        data = args.image.read_bytes()
    except OSError as error:
        raise CommandFailed(f"cannot read {args.image}: {error.strerror}") from error
    api = (args.api or _local_api()).rstrip("/")
    params: dict[str, str | int] = {"k": args.k} | ({"label": args.label} if args.label else {})
    content_type = media_type_for(args.image.name) or "application/octet-stream"  # the API reads the bytes
    headers = {"Content-Type": content_type} | ({"x-api-key": args.api_key} if args.api_key else {})
    try:
        response = requests.post(
            f"{api}/search", params=params, data=data, headers=headers, timeout=SEARCH_TIMEOUT_S
        )
    except requests.ConnectionError as error:
        raise CommandFailed(
            f"no API answers at {api}: start one with `imgsearch serve`, or pass --api"
        ) from error
    body = _json_or_text(response)
    if not response.ok:
        raise CommandFailed(f"the API answered {response.status_code}: {_error_message(body)}")
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        _print_results(body)
    return 0


def _local_api() -> str:
    running = discovery.find_running()
    return running.url if running else DEFAULT_API


def _print_results(body: dict[str, Any]) -> None:
    print(f"{'#':>3}  {'similarity':>10}  {'label':<16}  key")
    for rank, result in enumerate(body["results"], start=1):
        print(f"{rank:>3}  {result['similarity']:>10.4f}  {result['label'] or '-':<16}  {result['key']}")
    print(f"({len(body['results'])} results from {body['index']} in {body['took_ms']} ms)")


# failures ------------------------------------------------------------------------------------------


def _configure_failures(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", type=int, default=20, help="how many, newest first")


def _failures(args: argparse.Namespace) -> int:
    from simsearch.index import connect_failure_log

    records = connect_failure_log(discovery.target_settings()).recent(args.n)
    if args.json:
        rows = [
            {
                "key": r.key,
                "etag": r.etag,
                "reason": r.reason_code,
                "message": r.message,
                "at": r.at.isoformat(),
            }
            for r in records
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for record in records:
        print(f"{record.at:%Y-%m-%d %H:%M:%S}  {record.reason_code:<18}  {record.key}\n    {record.message}")
    print(f"({len(records)} failures)" if records else "no failures recorded")
    return 0


# build-model ---------------------------------------------------------------------------------------


def _configure_build_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default=DEFAULT_ARCH, help="an architecture model.build knows")
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="PATH",
        help="a local copy of the checkpoint (default: torch's cache, ours, or a verified download)",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: build/models/<arch>)")


def _build_model(args: argparse.Namespace) -> int:
    from model.build import main as build_main

    out = args.out or DEFAULT_MODEL_DIR.parent / args.arch
    return build_main(
        ["--arch", args.arch, "--out", str(out), *(["--weights", str(args.weights)] if args.weights else [])]
    )


# shared --------------------------------------------------------------------------------------------


def _get_json(url: str, *, api_key: str | None) -> dict[str, Any]:
    import requests

    response = requests.get(url, headers={"x-api-key": api_key} if api_key else {}, timeout=SEARCH_TIMEOUT_S)
    body = _json_or_text(response)
    if not response.ok:
        raise CommandFailed(f"{url} answered {response.status_code}: {_error_message(body)}")
    return body  # type: ignore[no-any-return]


def _json_or_text(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_message(body: Any) -> str:
    """``{"error": {"code", "message"}}`` from our API, ``{"message"}`` from API Gateway itself."""
    if isinstance(body, dict):
        detail = body.get("error", body)
        if isinstance(detail, dict) and "message" in detail:
            code = f" ({detail['code']})" if "code" in detail else ""
            return f"{detail['message']}{code}"
    return str(body)[:300]


COMMANDS: tuple[Command, ...] = (
    Command(
        "serve",
        "run the local stack: S3/SQS, the ingest worker, the API and the web page",
        _configure_serve,
        _serve,
    ),
    Command("ingest", "index a folder (into the local stack) or an S3 prefix", _configure_ingest, _ingest),
    Command(
        "backfill",
        "fill an index from the bucket: a deployment's state machine (--stack) or the local stack",
        reindexing.add_backfill_arguments,
        reindexing.backfill,
    ),
    Command(
        "reindex",
        "a re-index's status, gate, switch, rollback or cleanup (--stack NAME, or the local stack)",
        reindexing.add_reindex_arguments,
        reindexing.reindex_step,
    ),
    Command("search", "find the images most similar to an image", _configure_search, _search),
    Command("failures", "list images that could not be indexed, and why", _configure_failures, _failures),
    Command(
        "duplicates",
        "clusters of exact (same bytes) and near (--near) duplicates in the index, and the bytes to reclaim",
        duplicates.add_arguments,
        duplicates.run,
    ),
    Command(
        "build-model", "build the ONNX model (what `make model` does)", _configure_build_model, _build_model
    ),
    Command(
        "whiten",
        "fit a whitening on a corpus (folder or s3://) and write the whitened model",
        whiten.add_arguments,
        whiten.run,
    ),
    Command(
        "eval",
        "measure retrieval quality on a folder-per-class dataset and write a report",
        evaluation.add_arguments,
        evaluation.evaluate,
    ),
    Command(
        "preflight",
        "check an AWS account before `cdk deploy`: concurrency, bootstrap, roles, instance types",
        preflight.add_arguments,
        preflight.run,
    ),
)
"""Every subcommand; another package adds one by adding its ``Command`` here."""

JSON_COMMANDS = frozenset({"ingest", "search", "failures", "duplicates", "backfill", "reindex"})


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="imgsearch", description="Image similarity search on this machine.")
    root.add_argument("-v", "--verbose", action="store_true", help="log what the handlers log")
    subcommands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub)
        if command.name in JSON_COMMANDS:
            sub.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        sub.set_defaults(run=command.run)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        status: int = args.run(args)
    except (CommandFailed, SimsearchError) as error:
        code = f" ({error.code})" if isinstance(error, SimsearchError) else ""
        print(f"imgsearch {args.command}: error{code}: {error}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
