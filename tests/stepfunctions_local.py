"""The app's state machine run in this process: moto's Step Functions interpreter, our real handlers.

``local_state_machine(template)`` takes a synthesised template (``Template.to_json()``), resolves its one
``AWS::StepFunctions::StateMachine`` as the account of ``tests.iam.template`` sees it, and runs it inside
``mock_aws()``: the S3 buckets the definition names are created, and every Lambda task calls the handler
that its function's ``Handler`` property names (``handlers.backfill.handler``), in this process. The
handlers read ``Settings.from_env()``, so the caller sets the functions' environment. moto's Lambda
needs no function created: ``LambdaSimpleBackend.invoke``, patched here, answers any name. The machine
is created under its logical id, so the ARN the template gives it (``StateMachineArn`` of a custom
resource) names it here too.

What moto 5.2 carries, and what this module adds:

- Task, Choice, Succeed, Fail, JSONPath ``Parameters``/``ResultSelector``/``ResultPath``, ``Retry``
  (it sleeps the real intervals, jitter included: keep retried errors out of quick tests), a
  distributed ``Map`` with an S3 ``ItemReader`` (one ListObjectsV2 page: at most 1000 keys; a listing
  with no keys at all fails the map with a ``KeyError``) and ``MaxConcurrency`` (that many workers).
- ``ItemBatcher`` is not in moto's grammar (CreateStateMachine fails with an ``ASLParserException``): it is
  taken out of the definition and applied here, as AWS shapes a batch: ``{"Items": [...],
  "BatchInput": {...}}``, each ``"<key>.$"`` of ``BatchInput`` a path into the map state's input.
- An S3 Inventory reader (``ReaderConfig.InputType: MANIFEST``) is not in moto's grammar either: such a
  map state becomes a ``Fail`` state (error ``NotRunByMoto``), so the definition loads, and a run that
  takes that branch says why it stops.
- ``ToleratedFailurePercentage`` must be a float literal for moto's parser, and moto ignores it: a map
  run whose batches fail still succeeds (the failed ones count in ``itemCounts.failed``, their output is
  ``null``). Applied here once every batch has run: more failed batches than tolerated fail the map
  with ``States.ExceedToleratedFailureThreshold``. AWS fails the map run as soon as the threshold is
  crossed and aborts the batches still running; here they finish first. ``ToleratedFailureCount`` is
  not applied (the app's maps set none).
- ``describe_map_run``: moto counts each batch as one item in ``itemCounts`` (AWS counts the objects
  there, and the batches, one child execution each, in ``executionCounts``); moto's ``executionCounts``
  leave a failed batch ``running``, so ``Run.batches`` are its ``itemCounts``.
- ``ResultWriter`` writes only ``<Prefix>/<map run id>/manifest.json``, with every list of ``ResultFiles``
  empty (AWS also writes the ``SUCCEEDED_n.json``/``FAILED_n.json`` files it lists), and nothing when the
  map fails.
- There is no ``RedriveExecution`` (the call raises moto's ``NotImplementedError``): a failed run is
  resumed here by a new execution with the same input. Unlike a redrive it sends the finished batches
  again too, which find their objects indexed (a HEAD and an index read each, no write).
- Not carried at all: the state machine's IAM role, Lambda timeouts, memory and concurrency limits, logging
  and tracing.
"""

from __future__ import annotations

import copy
import importlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws
from moto.awslambda.exceptions import UnknownFunctionException
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.reader_config import (
    input_type,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    distributed_iteration_component,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.json_path import extract_json

from localmode.api_gateway import LocalContext
from tests.iam.template import REGION, ResolvedTemplate

Handler = Callable[[dict[str, Any], Any], Any]

MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
"""moto runs executions (not just records them) and routes invocations to ``LambdaSimpleBackend``."""
MapRuns = distributed_iteration_component.DistributedIterationComponent  # a distributed map's runs
ROLE = "arn:aws:iam::123456789012:role/states"  # moto does not evaluate the state machine's role
TOLERANCE_EXCEEDED = StatesErrorNameType.StatesExceedToleratedFailureThreshold
READABLE_INPUT_TYPES = {value.value for value in input_type.InputTypeValue}  # CSV, JSON
NOT_IN_MOTO = "NotRunByMoto"


@dataclass(frozen=True, kw_only=True)
class Run:
    """How one execution ended: its status and output (or error), what it went through, its map run."""

    arn: str
    input: Any
    status: str
    output: Any
    error: str | None
    cause: str | None
    events: list[str]  # the history's event types, oldest first
    states: list[str]  # the name of every state entered, in order (a map's batches are not in it)
    batches: dict[str, int]  # the map run's itemCounts, which count batches in moto (module docstring)


@dataclass(frozen=True)
class LocalStateMachine:
    """The template's state machine in moto; start executions of it and wait for them."""

    arn: str
    definition: dict[str, Any]  # as moto runs it (``for_moto``)

    def run(self, run_input: Mapping[str, Any], *, timeout_s: float = 120.0) -> Run:
        """Start an execution with ``run_input`` and wait until it ends."""
        return self.wait(self.start(run_input), timeout_s=timeout_s)

    def start(self, run_input: Mapping[str, Any]) -> str:
        name = f"run-{uuid.uuid4().hex}"  # moto names an unnamed execution "None", so a second one clashes
        started = _client().start_execution(stateMachineArn=self.arn, name=name, input=json.dumps(run_input))
        return str(started["executionArn"])

    def executions(self) -> list[str]:
        """Every execution started (by ``start`` or by code under test), oldest first."""
        listed = _client().list_executions(stateMachineArn=self.arn)["executions"]
        return [e["executionArn"] for e in sorted(listed, key=lambda e: e["startDate"])]

    def wait(self, execution_arn: str, *, timeout_s: float = 120.0) -> Run:
        """The execution once it has ended; ``TimeoutError`` naming the states it went through if it
        has not after ``timeout_s`` (its thread is left to finish: moto cannot stop one)."""
        client = _client()
        deadline = time.monotonic() + timeout_s
        while (described := client.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                entered = _entered(_history(execution_arn))
                raise TimeoutError(f"{execution_arn} still runs after {timeout_s} s: {entered}")
            time.sleep(0.1)
        runs = client.list_map_runs(executionArn=execution_arn)["mapRuns"]
        counts = client.describe_map_run(mapRunArn=runs[-1]["mapRunArn"]) if runs else {}
        events = _history(execution_arn)
        return Run(
            arn=execution_arn,
            input=json.loads(described["input"]),
            status=described["status"],
            output=json.loads(described["output"]) if "output" in described else None,
            error=described.get("error"),
            cause=described.get("cause"),
            events=[event["type"] for event in events],
            states=_entered(events),
            batches=dict(counts.get("itemCounts", {})),
        )


@contextmanager
def local_state_machine(
    template: Mapping[str, Any], *, handlers: Mapping[str, Handler] | None = None
) -> Iterator[LocalStateMachine]:
    """The state machine of ``template`` in moto, for the block; ``mock_aws()`` is active inside.

    ``handlers`` replaces the handler of a ``Handler`` path (``{"handlers.backfill.handler": ...}``), for
    a test that makes an invocation fail as a crashed function would.
    """
    resolved = ResolvedTemplate.of(template)
    [(logical_id, machine)] = resolved.of_type("AWS::StepFunctions::StateMachine").items()
    definition, batchers = for_moto(json.loads(machine["Properties"]["DefinitionString"]))
    routes = _routes(resolved, definition, handlers or {})
    with ExitStack() as stack:
        stack.enter_context(mock_aws(config=MOTO_CONFIG))
        stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", _invoke(routes)))
        stack.enter_context(mock.patch.object(MapRuns, "_map_run", _batching_map_run(batchers)))
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in sorted(_buckets(definition)):
            s3.create_bucket(Bucket=bucket)
        created = _client().create_state_machine(
            name=logical_id, definition=json.dumps(definition), roleArn=ROLE
        )
        assert created["stateMachineArn"] == resolved.ref(logical_id), created["stateMachineArn"]
        yield LocalStateMachine(arn=created["stateMachineArn"], definition=definition)


def for_moto(definition: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The definition as moto parses it, and each map state's ``ItemBatcher`` by state name."""
    adapted, batchers = copy.deepcopy(dict(definition)), {}
    _adapt(adapted["States"], batchers)
    return adapted, batchers


def _adapt(states: dict[str, Any], batchers: dict[str, Any]) -> None:
    for name, state in list(states.items()):
        if state["Type"] != "Map":
            continue
        kind = state.get("ItemReader", {}).get("ReaderConfig", {}).get("InputType")
        if kind is not None and kind not in READABLE_INPUT_TYPES:
            cause = f"moto cannot read the items of {name} (ItemReader InputType {kind})"
            states[name] = {"Type": "Fail", "Error": NOT_IN_MOTO, "Cause": cause}
            continue
        if "ItemBatcher" in state:
            batchers[name] = state.pop("ItemBatcher")
        if "ToleratedFailurePercentage" in state:  # moto's grammar takes a float literal only
            state["ToleratedFailurePercentage"] = float(state["ToleratedFailurePercentage"])
        processor = state.get("ItemProcessor") or state.get("Iterator") or {}
        _adapt(processor.get("States", {}), batchers)


def _map_states(states: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state["Type"] == "Map":
            yield name, state
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            yield from _map_states(processor.get("States", {}))


def _buckets(definition: Mapping[str, Any]) -> set[str]:
    """The buckets the map states read (``ItemReader``) and write (``ResultWriter``)."""
    return {
        state[part]["Parameters"]["Bucket"]
        for _, state in _map_states(definition["States"])
        for part in ("ItemReader", "ResultWriter")
        if part in state
    }


def _routes(
    template: ResolvedTemplate, definition: Mapping[str, Any], replaced: Mapping[str, Handler]
) -> dict[str, tuple[Handler, int]]:
    """Function name -> (its handler, its timeout in ms), for every function the definition invokes."""
    text = json.dumps(definition)
    routes: dict[str, tuple[Handler, int]] = {}
    for logical_id, function in template.of_type("AWS::Lambda::Function").items():
        if f'"{template.arn(logical_id)}"' not in text:
            continue
        path = str(function["Properties"]["Handler"])
        module, _, name = path.rpartition(".")
        handler = replaced.get(path) or getattr(importlib.import_module(module), name)
        routes[logical_id] = (handler, int(function["Properties"].get("Timeout", 3)) * 1000)
    return routes


def _invoke(routes: Mapping[str, tuple[Handler, int]]) -> Callable[..., bytes]:
    """``LambdaSimpleBackend.invoke``, answering as Lambda does: the handler's result, or its error."""

    def invoke(
        _backend: Any, function_name: str, _qualifier: Any, body: Any, _headers: Any, response_headers: Any
    ) -> bytes:
        name = function_name.split(":function:")[-1].split(":")[0]  # an ARN, or a name
        if name not in routes:
            raise UnknownFunctionException(function_name)
        handler, timeout_ms = routes[name]
        event = json.loads(body) if body else {}
        try:
            result = handler(event, LocalContext(function=name, timeout_ms=timeout_ms))
        except Exception as error:  # Lambda reports it; Step Functions names the error by errorType
            response_headers["x-amz-function-error"] = "Unhandled"
            result = {"errorType": type(error).__name__, "errorMessage": str(error)}
        return json.dumps(result).encode()

    return invoke


def _batching_map_run(batchers: Mapping[str, Any]) -> Callable[..., None]:
    """moto's ``DistributedIterationComponent._map_run``, with ``ItemBatcher`` and the tolerance applied."""
    original = MapRuns._map_run

    def map_run(component: Any, env: Any, eval_input: Any) -> None:
        batcher = batchers.get(eval_input.state_name)
        if batcher is not None:
            items = env.stack.pop()  # what the ItemReader listed
            env.stack.append(_batches(items, batcher, state_input=env.states.get_input()))
        original(component, env, eval_input)
        _fail_beyond_tolerance(env, eval_input)

    return map_run


def _batches(items: list[Any], batcher: Mapping[str, Any], *, state_input: Any) -> list[dict[str, Any]]:
    size = int(batcher.get("MaxItemsPerBatch") or len(items) or 1)
    shared = _resolved(batcher["BatchInput"], state_input) if "BatchInput" in batcher else None
    batches = []
    for start in range(0, len(items), size):
        batch: dict[str, Any] = {"Items": items[start : start + size]}
        if shared is not None:
            batch["BatchInput"] = copy.deepcopy(shared)
        batches.append(batch)
    return batches


def _resolved(template: Any, data: Any) -> Any:
    """A JSONPath payload template: each ``"<key>.$"`` becomes ``"<key>"`` with the value of its path."""
    if isinstance(template, dict):
        return {
            key.removesuffix(".$"): extract_json(value, data)
            if key.endswith(".$")
            else _resolved(value, data)
            for key, value in template.items()
        }
    if isinstance(template, list):
        return [_resolved(value, data) for value in template]
    return template


def _fail_beyond_tolerance(env: Any, eval_input: Any) -> None:
    counts = eval_input.map_run_record.item_counter
    failed, total = counts.failed.get() + counts.timed_out.get(), counts.total.get()
    tolerated = eval_input.tolerated_failure_percentage
    if not total or failed * 100.0 <= tolerated * total:
        return
    cause = f"{failed} of {total} batches failed; the map tolerates {tolerated}%"
    details = MapRunFailedEventDetails(error=TOLERANCE_EXCEEDED.to_name(), cause=cause)
    raise FailureEventException(
        FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=TOLERANCE_EXCEEDED),
            event_type=HistoryEventType.MapRunFailed,
            event_details=EventDetails(mapRunFailedEventDetails=details),
        )
    )


def _history(execution_arn: str) -> list[dict[str, Any]]:
    return list(_client().get_execution_history(executionArn=execution_arn, maxResults=1000)["events"])


def _entered(events: list[dict[str, Any]]) -> list[str]:
    """The name of each state entered, in order."""
    return [
        event["stateEnteredEventDetails"]["name"] for event in events if "stateEnteredEventDetails" in event
    ]


def _client() -> Any:
    return boto3.client("stepfunctions", region_name=REGION)
