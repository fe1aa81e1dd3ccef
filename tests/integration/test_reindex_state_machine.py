"""The backfill and re-index state machine as synthesised, run by moto with the real handlers.

The template gives the definition, each function's handler and each function's environment (the node's
URL, lucene, this machine's model and threads replace what only AWS has); ``tests.stepfunctions_local``
runs it and says what moto does not carry. S3 is moto's (images, models, reports), the indexes live on
the real node, the model is the real MobileNetV2, and a deployment is what CloudFormation makes of it:
the ``Custom::VectorIndex`` event through the bootstrap handler, which publishes the model, attaches its
index and, on a model change, starts the execution. A "new model" is the same network under another
model id, so both indexes hold vectors of their own model and every count can be compared.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from aws_cdk.assertions import Template
from opensearchpy import OpenSearch

from handlers import backfill, index_bootstrap, ingest, query, reindex
from infra.config import PROFILES
from infra.packaging import BACKFILL_HANDLER, BOOTSTRAP_HANDLER, INGEST_HANDLER, REINDEX_HANDLER
from localmode import cli, reindexing
from localmode.api_gateway import LocalContext
from localmode.harness import ingest_context
from simsearch.index import connect_collection, connect_failure_log
from simsearch.index.naming import alias_name
from simsearch.index.port import Pointers
from simsearch.ingestion.pipeline import CHUNK
from simsearch.ingestion.time_budget import MARGIN_S
from simsearch.manifest import ModelManifest
from simsearch.models import s3_model_uri
from simsearch.settings import Settings
from tests import api_events
from tests.deployment import cloudformation_properties, function_settings
from tests.factories import s3_notification, s3_record, sqs_event, sqs_record
from tests.faultproxy import FaultProxy
from tests.iam.template import REGION, ResolvedTemplate
from tests.image_factories import photo
from tests.infra.conftest import PROFILE_CONTEXT, in_process_stack
from tests.stepfunctions_local import LocalStateMachine, Run, local_state_machine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CATS = tuple(f"cats/{n}.jpg" for n in range(12))
DOGS = tuple(f"dogs/{n}.jpg" for n in range(12, 25))
BROKEN = "dogs/broken.jpg"
KEYS = sorted((*CATS, *DOGS, BROKEN))  # as ListObjectsV2 lists them
READABLE = frozenset((*CATS, *DOGS))
BATCH = PROFILES["dev"].backfill_batch_size
FIRST_BATCH = frozenset(KEYS[:BATCH])
FUNCTIONS = (BACKFILL_HANDLER, REINDEX_HANDLER, BOOTSTRAP_HANDLER, INGEST_HANDLER)
ROOTS: tuple[Callable[[], Any], ...] = (backfill.service, reindex.collection, ingest.service, query.service)
STEPS = ("Prepare", "Backfill", "Gate", "Switch", "Backfilled", "Switched", "ReadyToSwitch")
"""The states that do something or end a run (``steps``), whichever choices lead from one to the next."""
BACKFILLED = ["Prepare", "Backfill", "Backfilled"]
SWITCHED = ["Prepare", "Backfill", "Gate", "Switch", "Switched"]

Hook = Callable[[dict[str, Any]], None]


class FunctionCrashed(Exception):
    """What a batch ends with when its invocation dies (out of memory, a bug): no retry applies."""


@dataclass
class World:
    """One deployment of the template: its state machine, its functions' settings, its buckets."""

    template: ResolvedTemplate
    machine: LocalStateMachine
    settings: Settings  # every function's (they share one environment here)
    proxy: FaultProxy  # between the functions and the node
    client: OpenSearch  # the test's own view of the node
    monkeypatch: pytest.MonkeyPatch
    before: dict[str, list[Hook]] = field(default_factory=dict)  # handler -> run as each event arrives

    @property
    def bucket(self) -> str:
        return self.settings.images_bucket

    def deploy(
        self, model_dir: Path, *, request: str = "Create", physical_id: str | None = None
    ) -> dict[str, Any]:
        """Functions carrying the model of ``model_dir`` (a cold start each), then the ``Custom::VectorIndex``
        event CloudFormation sends for it; the bootstrap's answer."""
        self.settings = replace(self.settings, model_dir=model_dir)
        for name, value in self.settings.to_env().items():
            self.monkeypatch.setenv(name, value)
        cold_start()
        event: dict[str, Any] = {
            "RequestType": request,
            "ResourceType": "Custom::VectorIndex",
            "ResourceProperties": self._vector_index(ModelManifest.load(model_dir).model_id),
        }
        if physical_id is not None:
            event["PhysicalResourceId"] = physical_id
        return index_bootstrap.handler(event, None)

    def change_model(self, model_dir: Path) -> tuple[str, Run]:
        """Deploy ``model_dir`` in place of the serving model; the new index, and the re-index it started."""
        started = set(self.machine.executions())
        serving = self.pointers().serving
        assert serving is not None
        old = alias_name(self.settings.index_prefix, serving.model_id)  # the resource's physical id
        answer = self.deploy(model_dir, request="Update", physical_id=old)
        [execution] = [arn for arn in self.machine.executions() if arn not in started]
        return str(answer["Data"]["Index"]), self.machine.wait(execution)

    def serving(self) -> str:
        serving = self.pointers().serving
        assert serving is not None
        return serving.name

    def pointers(self) -> Pointers:
        collection = connect_collection(self.settings)
        try:
            return collection.pointers()
        finally:
            collection.close()

    def versions(self, index: str) -> dict[str, int]:
        """Each indexed key and its document's ``_version``, which every write of it raises."""
        self.client.indices.refresh(index=index)
        body = {"query": {"match_all": {}}, "size": 1000, "_source": ["key"], "version": True}
        hits = self.client.search(index=index, body=body)["hits"]["hits"]
        return {hit["_source"]["key"]: int(hit["_version"]) for hit in hits}

    def failed_keys(self) -> set[str]:
        log = connect_failure_log(self.settings)
        try:
            self.client.indices.refresh(index=f"{self.settings.index_prefix}-*")
            return {record.key for record in log.recent(100)}
        finally:
            log.close()

    def model_uri(self, model_id: str) -> str:
        """Where the deployment publishes ``model_id`` (the template's models bucket)."""
        return s3_model_uri(urlsplit(self._resource()["ModelUri"]).netloc, model_id)

    def _resource(self) -> Mapping[str, Any]:
        [resource] = self.template.of_type("Custom::VectorIndex").values()
        return resource["Properties"]  # type: ignore[no-any-return]

    def _vector_index(self, model_id: str) -> dict[str, Any]:
        return {
            **cloudformation_properties(self._resource()),
            "Prefix": self.settings.index_prefix,
            "ModelId": model_id,
            "ModelUri": self.model_uri(model_id),
            "Engine": "lucene",  # the node has no faiss libraries
            "Replicas": "0",  # one node: a replica would never be assigned
        }


def steps(run: Run) -> list[str]:
    return [state for state in run.states if state in STEPS]


def deployed_settings(template: ResolvedTemplate, **overrides: Any) -> Settings:
    """The one environment of the functions that run here: in one process they must agree on it."""
    found = {function_settings(template, handler, **overrides) for handler in FUNCTIONS}
    assert len(found) == 1, f"the functions' environments differ: {found}"
    return found.pop()


def with_hooks(hooks: list[Hook], handler: Callable[[dict[str, Any], Any], Any]) -> Any:
    """``handler`` as deployed, after whatever the test makes happen as each event arrives (``hooks``)."""

    def invoke(event: dict[str, Any], context: Any) -> Any:
        for hook in list(hooks):
            hook(event)
        return handler(event, context)

    return invoke


def cold_start() -> None:
    """Close and forget every function's composition root: the next invocation builds it anew."""
    for root in ROOTS:
        if root.cache_info().currsize:  # type: ignore[attr-defined]
            root().close()
        root.cache_clear()  # type: ignore[attr-defined]


def synthesised(profile: str, tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, Any]:
    stack = in_process_stack(tmp_path_factory.mktemp(profile), profile=profile, **PROFILE_CONTEXT[profile])
    return Template.from_stack(stack).to_json()


@pytest.fixture(scope="module")
def dev_template(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, Any]:
    return synthesised("dev", tmp_path_factory)


@pytest.fixture(scope="module")
def prod_template(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, Any]:
    return synthesised("prod", tmp_path_factory)


@pytest.fixture
def world(
    request: pytest.FixtureRequest,
    opensearch_url: str,
    opensearch_client: OpenSearch,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """The dev profile (or ``request.param``) deployed: the bucket's images, then the first model (it serves).

    The functions reach the node through a ``FaultProxy``; the indexes are deleted afterwards.
    """
    template: Mapping[str, Any] = request.getfixturevalue(f"{getattr(request, 'param', 'dev')}_template")
    resolved, prefix = ResolvedTemplate.of(template), f"sfn{uuid.uuid4().hex[:10]}"

    before: dict[str, list[Hook]] = {BACKFILL_HANDLER: [], REINDEX_HANDLER: []}
    handlers = {
        BACKFILL_HANDLER: with_hooks(before[BACKFILL_HANDLER], backfill.handler),
        REINDEX_HANDLER: with_hooks(before[REINDEX_HANDLER], reindex.handler),
    }
    with (
        _indexes_deleted(opensearch_client, prefix),
        FaultProxy(opensearch_url) as proxy,
        local_state_machine(template, handlers=handlers) as machine,
    ):
        settings = deployed_settings(
            resolved,
            opensearch_url=proxy.url,
            opensearch_auth="none",
            engine="lucene",
            index_prefix=prefix,
            model_dir=model_dir,
            model_cache_dir=tmp_path / "models",
            ort_threads=2,
        )
        world = World(resolved, machine, settings, proxy, opensearch_client, monkeypatch, before)
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)  # the bootstrap's Step Functions client reads it
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=urlsplit(world.model_uri("any")).netloc)
        for n, key in enumerate(KEYS):
            s3.put_object(Bucket=world.bucket, Key=key, Body=b"not an image" if key == BROKEN else photo(n))
        world.deploy(model_dir)
        yield world
        cold_start()


@contextmanager
def _indexes_deleted(client: OpenSearch, prefix: str) -> Iterator[None]:
    try:
        yield
    finally:
        client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)


@pytest.fixture
def new_model(model_dir: Path, tmp_path: Path) -> Path:
    """The same network under another model id: a new model to every index, pointer and model store."""
    target = tmp_path / "new-model"
    shutil.copytree(model_dir, target)
    manifest = ModelManifest.load(model_dir)
    replace(manifest, model_id=f"{manifest.model_id}-v2").save(target)
    return target


def test_a_backfill_indexes_what_the_bucket_holds_under_the_prefix_it_is_given(world: World) -> None:
    serving = world.serving()
    cats = world.machine.run({"prefix": "cats/"})
    assert (cats.status, steps(cats), cats.batches["total"]) == ("SUCCEEDED", BACKFILLED, 1)
    assert set(world.versions(serving)) == set(CATS)

    everything = world.machine.run({})
    assert (everything.status, steps(everything)) == ("SUCCEEDED", BACKFILLED)
    assert set(world.versions(serving)) == READABLE
    assert world.failed_keys() == {BROKEN}
    batches = math.ceil(len(KEYS) / BATCH)
    assert (everything.batches["total"], everything.batches["succeeded"]) == (batches, batches)
    written = everything.output["backfill"]  # the map's ResultPath: what the ResultWriter wrote
    bucket, key = written["ResultWriterDetails"]["Bucket"], written["ResultWriterDetails"]["Key"]
    assert key == f"backfills/{written['MapRunArn'].rsplit(':', 1)[1]}/manifest.json"
    manifest = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert json.loads(manifest)["MapRunArn"] == written["MapRunArn"]


def test_a_second_backfill_writes_nothing(world: World) -> None:
    serving = world.serving()
    world.machine.run({})
    before, requests = world.versions(serving), len(world.proxy.seen)
    again = world.machine.run({})
    assert (again.status, steps(again)) == ("SUCCEEDED", BACKFILLED)
    assert world.versions(serving) == before
    assert [e.path for e in world.proxy.seen[requests:] if "_bulk" in e.path] == []


def test_a_model_change_fills_the_new_index_beside_live_traffic_then_serves_it(
    world: World, new_model: Path
) -> None:
    """Uploads and deletes during the re-index reach both indexes; queries stay on the old model."""
    world.machine.run({})
    old = world.pointers().serving
    assert old is not None
    uploaded, deleted = "cats/new.jpg", DOGS[1]
    during: list[Any] = []

    def live_traffic(event: dict[str, Any]) -> None:
        if deleted in {item["Key"] for item in event["Items"]}:  # before the batch that lists it
            during.extend(_upload_delete_and_search(world, upload=uploaded, delete=deleted))

    world.before[BACKFILL_HANDLER].append(live_traffic)
    target, run = world.change_model(new_model)

    [ingested, searched] = during
    assert ingested == {"batchItemFailures": []}
    assert (searched.status, searched.json["model_id"]) == (200, old.model_id)
    assert (run.status, steps(run)) == ("SUCCEEDED", SWITCHED)
    pointers = world.pointers()
    assert (world.serving(), pointers.previous) == (target, old)
    assert {info.name for info in pointers.writing} == {old.name, target}
    expected = (READABLE - {deleted}) | {uploaded}
    assert set(world.versions(old.name)) == expected
    assert set(world.versions(target)) == expected
    cold_start()
    now = api_events.call(query.handler, api_events.post_image("/search", photo(0)))
    assert now.json["model_id"] == ModelManifest.load(new_model).model_id


def _upload_delete_and_search(world: World, *, upload: str, delete: str) -> tuple[Any, api_events.Answer]:
    """A user uploads and deletes (S3, then the ingest function with the notifications), then searches."""
    s3, body = boto3.client("s3", region_name=REGION), photo(99)
    etag = s3.put_object(Bucket=world.bucket, Key=upload, Body=body)["ETag"].strip('"')
    s3.delete_object(Bucket=world.bucket, Key=delete)
    records = (
        s3_record("ObjectCreated:Put", upload, bucket=world.bucket, etag=etag, size=len(body)),
        s3_record("ObjectRemoved:Delete", delete, bucket=world.bucket),
    )
    event = sqs_event(*(sqs_record(s3_notification(record)) for record in records))
    ingested = ingest.handler(event, ingest_context())
    return ingested, api_events.call(query.handler, api_events.post_image("/search", photo(0)))


def test_a_reindex_that_fails_half_way_resumes_without_rewriting_the_batches_done(
    world: World, new_model: Path
) -> None:
    world.machine.run({})
    before = world.pointers()

    def crash_after_the_first_batch(event: dict[str, Any]) -> None:
        if event["Items"][0]["Key"] != KEYS[0]:
            raise FunctionCrashed("the function died with its batch")

    world.before[BACKFILL_HANDLER].append(crash_after_the_first_batch)
    target, failed = world.change_model(new_model)
    assert (failed.status, failed.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    assert steps(failed) == ["Prepare", "Backfill"]  # no gate, no switch
    batches = math.ceil(len(KEYS) / BATCH)
    assert (failed.batches["succeeded"], failed.batches["failed"]) == (1, batches - 1)
    stopped = world.pointers()
    assert (stopped.serving, stopped.previous) == (before.serving, None)
    assert stopped.building is not None and stopped.building.name == target
    done = world.versions(target)
    assert set(done) == FIRST_BATCH & READABLE

    world.before[BACKFILL_HANDLER].clear()
    resumed = world.machine.run(failed.input)  # moto has no redrive (tests/stepfunctions_local.py)
    assert (resumed.status, steps(resumed)) == ("SUCCEEDED", SWITCHED)
    assert world.serving() == target
    filled = world.versions(target)
    assert set(filled) == READABLE
    assert {key: filled[key] for key in done} == done


@pytest.mark.parametrize("world", ["prod"], indirect=True)
def test_the_prod_profile_gates_the_new_index_and_leaves_the_switch_to_an_operator(
    world: World, new_model: Path
) -> None:
    world.machine.run({})
    old = world.serving()
    target, run = world.change_model(new_model)
    assert (run.status, steps(run)) == ("SUCCEEDED", ["Prepare", "Backfill", "Gate", "ReadyToSwitch"])
    assert run.output["gate"]["passed"] is True
    building = world.pointers().building
    assert (world.serving(), building and building.name) == (old, target)
    assert set(world.versions(target)) == READABLE


def test_a_batch_that_cannot_reach_the_index_for_a_moment_is_retried(world: World) -> None:
    """The node answers 503 to the batch's first look at the writing pointer, retries included: the
    batch must come back (``RetryBatch``), not fail for good and fail the map with it."""
    serving = world.serving()
    attempts = 1 + world.settings.opensearch_retries
    writing = f"{world.settings.index_prefix}-writing/_mapping"
    fault = world.proxy.fail(status=503, times=attempts, path_contains=writing)
    run = world.machine.run({"prefix": "cats/"})
    assert fault.injected == attempts
    assert (run.status, run.error, steps(run)) == ("SUCCEEDED", None, BACKFILLED), run.cause
    assert set(world.versions(serving)) == set(CATS)


def test_a_batch_with_too_little_time_left_asks_for_a_retry_instead_of_timing_out(world: World) -> None:
    """The map retries ``RetryBatch`` and not a timeout: a batch short of time stops between chunks,
    keeps what it indexed, and the retry finishes it."""
    serving = world.serving()
    event = {"Items": [{"Key": key} for key in sorted(READABLE)], "BatchInput": {"target": serving}}
    backfill.service()  # a warm start: the model is loaded before the clock runs
    short = LocalContext(function="backfill", timeout_ms=int((MARGIN_S + 0.3) * 1000))

    with pytest.raises(backfill.RetryBatch, match="no time left"):
        backfill.handler(event, short)

    assert CHUNK <= len(world.versions(serving)) < len(READABLE)
    retried = backfill.handler(event, LocalContext(function="backfill", timeout_ms=300_000))
    assert retried["counts"]["unchanged"] >= CHUNK
    assert set(world.versions(serving)) == READABLE


def test_a_plain_backfill_after_a_switch_keeps_the_new_model_serving(world: World, new_model: Path) -> None:
    world.machine.run({})
    target, reindexed = world.change_model(new_model)
    assert steps(reindexed) == SWITCHED
    again = world.machine.run({})
    assert (again.status, steps(again), world.serving()) == ("SUCCEEDED", BACKFILLED, target)


def test_the_command_line_drives_the_deployed_state_machine_and_control_function(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``imgsearch backfill|reindex --stack``: the stack found by its outputs (CloudFormation in moto)."""
    [control] = [
        name
        for name, function in world.template.of_type("AWS::Lambda::Function").items()
        if function["Properties"].get("Handler") == REINDEX_HANDLER
    ]
    outputs = {
        "ReindexStateMachine": world.machine.arn,
        "ReindexFunction": control,
        "ImagesBucket": world.bucket,
    }
    stack = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},  # a stack needs a resource
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="ImageSearch", TemplateBody=json.dumps(stack)
    )
    monkeypatch.setattr(reindexing, "POLL_S", 0.05)
    on_stack = ["--stack", "ImageSearch", "--region", REGION, "--json"]

    assert cli.main(["backfill", "--prefix", "cats/", *on_stack]) == 0
    filled = json.loads(capsys.readouterr().out)
    assert (filled["status"], filled["target"], filled["items"]["succeeded"]) == (
        "SUCCEEDED",
        world.serving(),
        1,  # moto counts batches (tests/stepfunctions_local.py)
    )
    assert set(world.versions(world.serving())) == set(CATS)

    assert cli.main(["reindex", "status", *on_stack]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["serving"] == world.serving()
    assert [(run["status"], run["items"].get("succeeded")) for run in status["executions"]] == [
        ("SUCCEEDED", 1)
    ]

    assert cli.main(["reindex", "gate", *on_stack]) == 1  # nothing is being built: the function refuses
    assert "NotFoundError: no index is being built" in capsys.readouterr().err
