"""``imgsearch backfill`` and ``imgsearch reindex``: day-two operations, on a deployment or on this machine.

With ``--stack NAME`` they drive the deployed stack, found by its CloudFormation outputs: ``backfill``
starts the re-index state machine (``infra/reindex.py``) and follows its distributed map's counters
with a progress bar; ``reindex ACTION`` invokes the control function. Without it they act on the
running local stack's collection (or on the index ``SIMSEARCH_*`` variables name) through the same
steps (``simsearch.reindex.step``): a local backfill fills the index the state machine would, then
gates and switches as the dev profile does.

Exit status: 0 done; 1 refused or failed (a gate that did not pass, an execution that failed, objects
left to retry), with the reason on stderr; 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localmode import discovery
from localmode.errors import CommandFailed
from simsearch import reindex

if TYPE_CHECKING:
    from simsearch.index.port import IndexCollection
    from simsearch.settings import Settings

logger = logging.getLogger(__name__)

POLL_S = 3.0
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
STATE_MACHINE_OUTPUT = "ReindexStateMachine"  # infra/stack.py's outputs
FUNCTION_OUTPUT = "ReindexFunction"
REPORTS_OUTPUT = "ReportsBucket"
IMAGES_OUTPUT = "ImagesBucket"
ACTIONS = ("status", "gate", "switch", "rollback", "cleanup")


# where the steps run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """A deployed stack: its re-index state machine and control function, from its outputs."""

    name: str
    outputs: Mapping[str, str]
    clients: Callable[[str], Any]  # boto3 client factory (region, profile and endpoint from the shell)

    @property
    def state_machine(self) -> str:
        return self.outputs[STATE_MACHINE_OUTPUT]

    @property
    def function(self) -> str:
        return self.outputs[FUNCTION_OUTPUT]

    @classmethod
    def find(cls, name: str, *, clients: Callable[[str], Any]) -> Stack:
        try:
            [stack] = clients("cloudformation").describe_stacks(StackName=name)["Stacks"]
        except Exception as error:  # botocore's ClientError, NoCredentialsError, EndpointConnectionError
            raise CommandFailed(f"could not read stack {name}: {error}") from error
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        missing = [key for key in (STATE_MACHINE_OUTPUT, FUNCTION_OUTPUT) if key not in outputs]
        if missing:
            raise CommandFailed(
                f"stack {name} has no output {', '.join(missing)}: deploy this version of the app first"
            )
        return cls(name, outputs, clients)

    def step(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Invoke the control function; a step it refused is an ``CommandFailed`` with its reason."""
        answer = self.clients("lambda").invoke(FunctionName=self.function, Payload=json.dumps(dict(event)))
        body = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            detail = body if isinstance(body, dict) else {}
            raise CommandFailed(f"{detail.get('errorType', 'error')}: {detail.get('errorMessage', body)}")
        return body  # type: ignore[no-any-return]


def _stack_clients(args: argparse.Namespace) -> Callable[[str], Any]:
    import boto3

    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    return lambda service: session.client(service)


# backfill --------------------------------------------------------------------------------------------


def add_backfill_arguments(parser: argparse.ArgumentParser) -> None:
    _add_stack_arguments(parser)
    parser.add_argument("--prefix", default="", help="only the keys under this prefix")
    parser.add_argument(
        "--target", default="", help="the index to fill (default: the one being built, else the serving one)"
    )
    parser.add_argument(
        "--inventory",
        action="store_true",
        help="--stack: read the bucket's latest S3 Inventory instead of listing it (profiles with inventory)",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="--stack: start the execution and print it, do not follow"
    )
    parser.add_argument(
        "--no-switch", action="store_true", help="local: after a re-index's gate, leave the switch to you"
    )


def backfill(args: argparse.Namespace) -> int:
    """Fill an index from the bucket: the deployment's state machine, or the same steps here."""
    result = _backfill_stack(args) if args.stack else _backfill_local(args)
    _print(result, args)
    return 0 if result["ok"] else 1


def _backfill_stack(args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack.find(args.stack, clients=_stack_clients(args))
    states = stack.clients("stepfunctions")
    run = {"target": args.target, "prefix": args.prefix}
    if args.inventory:
        run["manifest"] = latest_inventory(stack)
    execution = states.start_execution(
        stateMachineArn=stack.state_machine,
        name=f"backfill-{time.strftime('%Y%m%dT%H%M%S')}",
        input=json.dumps(run),
    )["executionArn"]
    if args.no_wait:
        return {"ok": True, "execution": execution, "status": "RUNNING"}
    return follow(states, execution, quiet=args.json)


def latest_inventory(stack: Stack) -> str:
    """The key of the newest inventory manifest S3 delivered for the stack's images bucket."""
    from infra.reindex import INVENTORY_ID, INVENTORY_PREFIX

    reports, images = stack.outputs.get(REPORTS_OUTPUT), stack.outputs[IMAGES_OUTPUT]
    prefix = f"{INVENTORY_PREFIX}/{images}/{INVENTORY_ID}/"
    manifests = [
        item["Key"]
        for page in stack.clients("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=reports, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].endswith("/manifest.json")
    ]
    if not manifests:
        raise CommandFailed(
            f"no inventory under s3://{reports}/{prefix}: S3 delivers the first within 48 hours of the "
            "deployment, and only for profiles with -c inventory=true; back up with a listing instead"
        )
    return str(max(manifests))  # the folders are dated, YYYY-MM-DDTHH-MMZ


def follow(states: Any, execution: str, *, quiet: bool) -> dict[str, Any]:
    """Wait for ``execution``, with a progress bar fed by its map run's item counters."""
    from tqdm import tqdm

    with tqdm(unit="item", desc="backfill", file=sys.stderr, disable=quiet) as bar:
        while (described := states.describe_execution(executionArn=execution))["status"] not in TERMINAL:
            _show(bar, _progress(states, execution))
            time.sleep(POLL_S)
        counts = _map_run_counts(states, execution)
        _show(bar, counts)
    output = json.loads(described.get("output") or "{}")
    result = {
        "ok": described["status"] == "SUCCEEDED",
        "execution": execution,
        "status": described["status"],
        "items": counts,
        "target": output.get("prepared", {}).get("target"),
        "switched": "switched" in output,
    }
    if not result["ok"]:
        result["error"] = f"{described.get('error', '')}: {described.get('cause', '')}".strip(": ")
    return result


def _show(bar: Any, counts: Mapping[str, int]) -> None:
    if counts:
        bar.total = counts.get("total") or None
        bar.n = counts.get("succeeded", 0) + counts.get("failed", 0)
        bar.set_postfix(failed=counts.get("failed", 0), refresh=False)
        bar.refresh()


def _progress(states: Any, execution: str) -> dict[str, int]:
    """The counters while the run goes on, or none this time: they only feed the progress bar, and a
    read may fail for reasons that do not concern the run (throttling, a map run not listed yet)."""
    try:
        return _map_run_counts(states, execution)
    except Exception as error:  # any failure here costs one refresh of the bar, no more
        logger.debug("map run counters not read this time: %s", error)
        return {}


def _map_run_counts(states: Any, execution: str) -> dict[str, int]:
    runs = states.list_map_runs(executionArn=execution).get("mapRuns", [])
    if not runs:
        return {}
    counts: dict[str, int] = states.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]
    return counts


def _backfill_local(args: argparse.Namespace) -> dict[str, Any]:
    """The state machine's steps on this machine: prepare, fill, and for a re-index gate and switch."""
    from tqdm import tqdm

    from simsearch import bootstrap
    from simsearch.backfill import backfill as fill
    from simsearch.index import connect_collection
    from simsearch.storage import S3ImageStore

    settings, bucket, s3 = _local_target()
    bootstrap.attach(settings)  # as `imgsearch serve` and a deployment's bootstrap do: idempotent
    with closing(connect_collection(settings)) as collection:
        prepared = reindex.step(
            collection, {"action": "prepare", "input": {"target": args.target, "prefix": args.prefix}}
        )
        images = S3ImageStore(s3)
        with closing(bootstrap.collection_ingestion(settings, images=images)) as ingestion:
            target = prepared["target"]
            desc = f"fill {target} from s3://{bucket}/{args.prefix}"
            with tqdm(unit="image", desc=desc, file=sys.stderr, disable=args.json) as bar:
                summary = fill(
                    ingestion.into(target),
                    images,
                    bucket=bucket,
                    prefix=args.prefix,
                    on_batch=lambda outcomes: bar.update(len(outcomes)),
                )
        result: dict[str, Any] = {"ok": summary.complete, "target": target, **summary.to_json()}
        if prepared["building"] and summary.complete:
            result["gate"] = reindex.step(collection, {"action": "gate"})
            result["ok"] = result["gate"]["passed"]
            if result["ok"] and not args.no_switch:
                result["switched"] = reindex.step(collection, {"action": "switch"})
    return result


def _local_target() -> tuple[Settings, str, Any]:
    """The running local stack (its bucket in moto), or the deployment ``SIMSEARCH_*`` variables name."""
    import boto3

    from simsearch.bootstrap import INGEST_S3

    running = discovery.find_running()
    if running is not None:
        return running.settings, running.cloud.bucket, running.cloud.client("s3", config=INGEST_S3)
    settings = discovery.target_settings()
    return (
        settings,
        settings.images_bucket,
        boto3.client("s3", region_name=settings.aws_region, config=INGEST_S3),
    )


# reindex ---------------------------------------------------------------------------------------------


def add_reindex_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="what to do (status changes nothing)")
    _add_stack_arguments(parser)
    parser.add_argument("--force", action="store_true", help="switch: even if the gate does not pass")
    parser.add_argument(
        "--sample", type=int, default=0, help="gate: also compare top-10 neighbours on this many images"
    )
    parser.add_argument(
        "--min-overlap", type=float, default=0.0, help="gate: the top-10 overlap the new index must reach"
    )


def reindex_step(args: argparse.Namespace) -> int:
    event: dict[str, Any] = {"action": args.action}
    if args.action == "switch":
        event["force"] = args.force
    if args.action == "gate":
        event |= {"sample": args.sample, "min_overlap": args.min_overlap}
    if args.stack:
        stack = Stack.find(args.stack, clients=_stack_clients(args))
        result = stack.step(event)
        if args.action == "status":
            result["executions"] = _recent_executions(stack)
    else:
        with closing(_local_collection()) as collection:
            result = reindex.step(collection, event)
    ok = bool(result.get("passed", True))
    _print({"ok": ok, **result}, args)
    return 0 if ok else 1


def _local_collection() -> IndexCollection:
    from simsearch.index import connect_collection

    return connect_collection(discovery.target_settings())


def _recent_executions(stack: Stack, limit: int = 3) -> list[dict[str, Any]]:
    """The state machine's latest runs, with their map run's counters."""
    states = stack.clients("stepfunctions")
    runs = states.list_executions(stateMachineArn=stack.state_machine, maxResults=limit)["executions"]
    return [
        {
            "name": run["name"],
            "status": run["status"],
            "started": str(run["startDate"]),
            "items": _map_run_counts(states, run["executionArn"]),
        }
        for run in runs
    ]


# output ----------------------------------------------------------------------------------------------


def _add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="a deployed stack's name (default: the running local stack)")
    parser.add_argument("--region", help="--stack: its region (default: your AWS configuration's)")
    parser.add_argument("--profile", help="--stack: the AWS profile to use")


def _print(result: Mapping[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    print(report(result))
    if not result.get("ok", True):
        print(f"imgsearch {args.command}: {_why(result)}", file=sys.stderr)


def report(result: Mapping[str, Any]) -> str:
    """A few lines for a person: the pointers, each index, the run's counters, the gate's verdict."""
    parts = (_status_lines, _run_lines, _fill_lines, _gate_lines, _pointer_lines)
    return "\n".join(line for part in parts for line in part(result))


def _status_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [f"{role:>9}: {result[role]}" for role in ("serving", "building", "previous") if result.get(role)]
    if "indexes" not in result:
        return []
    for index in result["indexes"]:
        roles = ", ".join(index["roles"])
        lines.append(f"  {index['name']}  {index['documents']} images  model {index['model_id']}  ({roles})")
    for run in result.get("executions", []):
        items = run["items"]
        done = f"{items.get('succeeded', 0)}/{items.get('total', 0)} batches" if items else "no map run yet"
        lines.append(f"  run {run['name']}: {run['status']}, {done}")
    return lines


def _run_lines(result: Mapping[str, Any]) -> list[str]:
    if "execution" not in result:
        return []
    lines = [f"execution {result['execution']}: {result.get('status')}"]
    if items := result.get("items"):
        lines.append(f"batches: {items.get('succeeded', 0)} done, {items.get('failed', 0)} failed")
    return lines


def _fill_lines(result: Mapping[str, Any]) -> list[str]:
    if "counts" not in result:
        return []
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(result["counts"].items()))
    return [f"filled {result.get('target')}: {counts or 'no objects'}"]


def _gate_lines(result: Mapping[str, Any]) -> list[str]:
    gate = result.get("gate", result if "passed" in result else None)
    if not gate:
        return []
    verdict = "passed" if gate["passed"] else "refused"
    return [f"gate {verdict}: {gate['documents']} images, at least {gate['expected']} expected"]


def _pointer_lines(result: Mapping[str, Any]) -> list[str]:
    """After a switch or rollback (the answer, or a local backfill's ``switched``), and a cleanup."""
    switched = result.get("switched")
    pointers = switched if isinstance(switched, Mapping) else result
    lines = []
    if "writing" in pointers and "indexes" not in pointers:
        lines.append(f"serving {pointers['serving']} (previous: {pointers['previous'] or 'none'})")
    if "dropped" in result:
        lines.append(f"deleted: {', '.join(result['dropped']) or 'nothing'}")
    return lines


def _why(result: Mapping[str, Any]) -> str:
    gate = result.get("gate", result)
    if isinstance(gate, Mapping) and gate.get("problems"):
        return "; ".join(gate["problems"])
    if result.get("error"):
        return str(result["error"])
    if result.get("problems"):
        return "some objects failed transiently: run the backfill again to finish (done ones are skipped)"
    return "failed"
