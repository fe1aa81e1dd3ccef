"""Can the deployed functions do their work with exactly the access the stack gives them?

The functions run as deployed (handlers, settings from the synthesized template's environment) against
an OpenSearch node with the security plugin, as fine-grained access control runs on OpenSearch
Service: the bootstrap custom resources apply the template's own roles and role mappings (same code
path, same properties), and each function acts as an internal user whose backend role is the ARN of
the role the template gives it, which is how the service maps an IAM role. Every request they make is
recorded (OpenSearch on the wire, S3 through botocore) and then:

- must have passed fine-grained access control (no 401 or 403), and
- is replayed as the IAM request AWS would evaluate, against the synthesized identity and resource
  policies of both profiles, by the IAM simulator: each must be allowed.

The scenario is a deployment's life: the bootstrap, uploads, queries and a backfill batch; then a second
deployment with another model, which publishes that model and starts the re-index, a backfill batch
into the new index, queries and an upload meanwhile (the functions now carry the new model and load the
serving one's from the models bucket), and the control function's gate, switch, rollback, switch again
and cleanup. Writes attempted with the query function's identity must be refused by both. The engine
is lucene, not the deployed faiss: the node from Maven Central has no faiss libraries (the access checks
do not depend on the engine). What each function sent, and the statements that allow it, is written to
``build/iam/traffic-<profile>.md``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from aws_cdk.assertions import Template
from moto import mock_aws
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_errors

from devtools.opensearch_node import ADMIN_PASSWORD, ADMIN_USER, OpenSearchNode
from handlers import backfill as backfill_batch
from handlers import index_bootstrap, ingest, query, reindex
from handlers.index_bootstrap import AUDIT_CONFIG
from infra.config import INDEX_REQUESTS_PER_QUERY
from infra.packaging import (
    BACKFILL_HANDLER,
    BOOTSTRAP_HANDLER,
    INGEST_HANDLER,
    QUERY_HANDLER,
    REINDEX_HANDLER,
)
from localmode.cloud import provision
from localmode.harness import ingest_context
from simsearch import bootstrap
from simsearch.backfill import backfill
from simsearch.embedder import OnnxEmbedder
from simsearch.ids import image_id_for
from simsearch.index.naming import alias_name, version_name
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.settings import Settings
from tests import api_events
from tests.deployment import cloudformation_properties, function_settings
from tests.faultproxy import Exchange, FaultProxy
from tests.iam.policies import identity_policies, resource_policy, role_of_function, role_session
from tests.iam.simulator import Decision, Request, simulate
from tests.iam.template import REGION, ResolvedTemplate
from tests.image_factories import photo
from tests.infra.conftest import PROFILE_CONTEXT, in_process_stack
from tests.integration.ingest_world import Uploads
from tests.model_variants import renamed_model
from tests.traffic import AwsCallRecorder, Call, opensearch_request, route

pytestmark = pytest.mark.integration

REPORTS = Path(__file__).resolve().parents[2] / "build" / "iam"
HANDLERS = {
    "bootstrap": BOOTSTRAP_HANDLER,
    "ingest": INGEST_HANDLER,
    "query": QUERY_HANDLER,
    "backfill": BACKFILL_HANDLER,
    "reindex": REINDEX_HANDLER,
}
FUNCTIONS = ("ingest", "query", "backfill", "reindex")  # identities that are internal users, not the admin
INTRUDER = "query, attempting writes"
PROFILES = ("dev", "prod")
DENIED = {401, 403}
TLS = {"aws:SecureTransport": "true"}


@dataclass
class Identity:
    """A function's identity on the node: a user whose backend role is its role's ARN, and its proxy."""

    role_id: str
    proxy: FaultProxy
    user: str
    password: str

    @property
    def url(self) -> str:
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return self.proxy.url.replace("http://", f"http://{credentials}@", 1)


@dataclass
class Traffic:
    """Everything the functions sent, and what the scenario needs to look at it."""

    templates: dict[str, ResolvedTemplate]
    identities: dict[str, Identity]
    recorder: AwsCallRecorder
    query_settings: Settings
    bucket: str
    alias: str
    on_this_machine: dict[str, Any]  # settings overrides: the model, this machine's node and caches
    uploaded_for_query: list[str] = field(default_factory=list)  # keys the query API presigned a POST for
    reindex_steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # action -> the answer
    index_requests_per_api_call: dict[str, int] = field(default_factory=dict)
    intrusions: dict[str, set[int]] = field(default_factory=dict)  # attempt -> the statuses it got

    def exchanges(self, identity: str) -> list[Exchange]:
        return self.identities[identity].proxy.seen

    def calls(self, identity: str) -> list[Call]:
        return [call for call in self.recorder.calls if call.identity == identity]

    def settings(self, identity: str, **overrides: Any) -> Settings:
        """What the template gives ``identity``'s function, reaching the node as that identity."""
        return function_settings(
            self.templates["prod"],
            HANDLERS[identity],
            opensearch_url=self.identities[identity].url,
            **{**self.on_this_machine, **overrides},
        )


def deploy(monkeypatch: pytest.MonkeyPatch, settings: Settings, *roots: Callable[[], Any]) -> None:
    """The function's environment as Lambda would set it, and a cold start for its composition root."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    for root in roots:
        root.cache_clear()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def traffic(
    secured_opensearch: OpenSearchNode, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traffic]:
    second_model = renamed_model(model_dir, tmp_path_factory.mktemp("second-model"))
    templates = {
        profile: ResolvedTemplate.of(
            Template.from_stack(
                in_process_stack(
                    tmp_path_factory.mktemp(profile), profile=profile, **PROFILE_CONTEXT[profile]
                )
            ).to_json()
        )
        for profile in PROFILES
    }
    deployed = templates["prod"]  # prod has every custom resource (the audit log too); roles match dev's
    admin = OpenSearch(hosts=[secured_opensearch.admin_url], timeout=30)
    with ExitStack() as stack:
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        stack.enter_context(mock_aws())
        identities = {
            name: Identity(
                role_id=role_of_function(deployed, handler),
                proxy=stack.enter_context(FaultProxy(secured_opensearch.url)),
                user=f"{name}-function" if name in FUNCTIONS else ADMIN_USER,
                password=f"{secrets.token_urlsafe(18)}-Aa1" if name in FUNCTIONS else ADMIN_PASSWORD,
            )
            for name, handler in HANDLERS.items()
        }
        identities[INTRUDER] = replace(
            identities["query"], proxy=stack.enter_context(FaultProxy(secured_opensearch.url))
        )
        recorder = stack.enter_context(AwsCallRecorder().recording())
        manifest = ModelManifest.load(model_dir)
        bucket = function_settings(deployed, INGEST_HANDLER).images_bucket
        cloud = provision("", bucket=bucket, region=REGION)  # the template's bucket, in moto
        for name, value in cloud.env.items():
            monkeypatch.setenv(name, value)
        on_this_machine = {
            "opensearch_auth": "basic",
            "engine": "lucene",
            "model_dir": model_dir,
            "model_cache_dir": tmp_path_factory.mktemp("model-cache"),
            "ort_threads": 2,
        }
        run = Traffic(
            templates=templates,
            identities=identities,
            recorder=recorder,
            query_settings=function_settings(
                deployed, QUERY_HANDLER, opensearch_url=identities["query"].url, **on_this_machine
            ),
            bucket=bucket,
            alias=alias_name(function_settings(deployed, QUERY_HANDLER).index_prefix, manifest.model_id),
            on_this_machine=on_this_machine,
        )
        _provision_deployment_buckets(deployed)
        _bootstrap(run, deployed, monkeypatch)
        _create_function_users(run, admin)
        uploads = Uploads.of(cloud)
        ingest_settings = function_settings(
            deployed, INGEST_HANDLER, opensearch_url=identities["ingest"].url, **on_this_machine
        )
        _ingest_and_backfill(run, uploads, ingest_settings, monkeypatch)
        admin.indices.refresh(index=f"{ingest_settings.index_prefix}-*")
        _query(run, OnnxEmbedder.load(model_dir, threads=2), monkeypatch)
        _backfill_batch(run, uploads, monkeypatch)
        _intrude(run)
        _second_deployment(run, deployed, uploads, second_model, admin, monkeypatch)
        yield run
        admin.indices.delete(index=f"{ingest_settings.index_prefix}-*", ignore_unavailable=True)
        for name in FUNCTIONS:
            admin.transport.perform_request(
                "DELETE", f"/_plugins/_security/api/internalusers/{name}-function"
            )


def _provision_deployment_buckets(template: ResolvedTemplate) -> None:
    """The models and reports buckets, and the re-index state machine, as the template names them."""
    s3 = boto3.client("s3", region_name=REGION)
    for name in template.of_type("AWS::S3::Bucket"):
        if name.startswith("Artifacts"):
            s3.create_bucket(Bucket=template.ref(name))
    [machine] = template.of_type("AWS::StepFunctions::StateMachine")
    boto3.client("stepfunctions", region_name=REGION).create_state_machine(
        name=machine,  # the name the template's ARN resolves to; the definition is not run here
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=f"arn:aws:iam::123456789012:role/{machine}",
    )


def _bootstrap(run: Traffic, template: ResolvedTemplate, monkeypatch: pytest.MonkeyPatch) -> None:
    """The custom resources' Create events, as the provider framework sends them, run as the master user."""
    deploy(monkeypatch, _bootstrap_settings(run, template))
    with run.recorder.acting_as("bootstrap"):
        for kind in ("Custom::SearchAccessRoles", "Custom::SearchAuditLog", "Custom::VectorIndex"):
            for resource in template.of_type(kind).values():
                properties = cloudformation_properties(resource["Properties"])
                if kind == "Custom::VectorIndex":
                    properties["Engine"] = "lucene"  # the node has no faiss libraries
                event = {"RequestType": "Create", "ResourceType": kind, "ResourceProperties": properties}
                index_bootstrap.handler(event, None)


def _bootstrap_settings(run: Traffic, template: ResolvedTemplate, **overrides: Any) -> Settings:
    on_this_machine = {key: run.on_this_machine[key] for key in ("model_dir", "opensearch_auth")}
    return function_settings(
        template,
        BOOTSTRAP_HANDLER,
        opensearch_url=run.identities["bootstrap"].url,
        **{**on_this_machine, **overrides},
    )


def _create_function_users(run: Traffic, admin: OpenSearch) -> None:
    """One internal user per function, whose backend role is its IAM role's ARN (as the service maps it)."""
    template = run.templates["prod"]
    for name in FUNCTIONS:
        identity = run.identities[name]
        admin.transport.perform_request(
            "PUT",
            f"/_plugins/_security/api/internalusers/{identity.user}",
            body={"password": identity.password, "backend_roles": [template.arn(identity.role_id)]},
        )


def _ingest_and_backfill(
    run: Traffic, uploads: Uploads, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads, a bad file and a delete through the ingest handler; then a backfill with its identity.

    The test plays the user and Lambda's SQS poller; only what the function itself sends is its traffic.
    """
    deploy(monkeypatch, settings, ingest.service)
    for n, label in enumerate(("cats", "cats", "dogs", "dogs", "birds")):
        uploads.put(f"{label}/{n}.jpg", photo(n), ContentType="image/jpeg")
    uploads.put("cats/broken.jpg", b"not an image", ContentType="image/jpeg")
    _ingest(run, uploads)
    uploads.delete("birds/4.jpg")
    uploads.put("birds/5.jpg", photo(5), ContentType="image/jpeg")
    _ingest(run, uploads)
    with run.recorder.acting_as("ingest"):
        service = bootstrap.ingestion(settings)
        images = bootstrap.image_store(settings, config=bootstrap.INGEST_S3)
        summary = backfill(service, images, bucket=uploads.bucket)
        service.close()
        assert summary.counts["unchanged"] == 5 and summary.counts["failed"] == 1, summary
    ingest.service.cache_clear()


def _ingest(run: Traffic, uploads: Uploads) -> None:
    events = list(uploads.events())
    with run.recorder.acting_as("ingest"):
        for event in events:
            assert ingest.handler(event, ingest_context())["batchItemFailures"] == []


def _query(run: Traffic, embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every route and every kind of query, counting the index requests each API call makes."""
    deploy(monkeypatch, run.query_settings, query.service)
    some_id = image_id_for(run.bucket, "cats/0.jpg")
    [vector] = embedder.embed([decode_image(photo(0), limits=ImageLimits.deployed()).rgb])
    calls = {  # the first after a cold start also reads which index serves: a duplicates call does the
        # most (then the document, the documents of its content, the k-NN search)
        "GET /images/{id}/duplicates": api_events.get(f"/images/{some_id}/duplicates"),
        "POST /search (id)": api_events.post_json("/search", {"id": some_id, "filter": {"label": "cats"}}),
        "GET /health": api_events.get("/health"),
        "POST /search (image)": api_events.post_image("/search", photo(1)),
        "POST /search (s3_key)": api_events.post_json("/search", {"s3_key": "dogs/2.jpg", "k": 3}),
        "GET /images/{id}": api_events.get(f"/images/{some_id}"),
        "POST /search (collapsed)": api_events.post_json(
            "/search", {"id": some_id, "collapse_duplicates": True}
        ),
        "POST /uploads": api_events.request("POST", "/uploads"),
        "GET /openapi.json": api_events.get("/openapi.json"),
        "POST /search (vector)": api_events.post_json("/search", {"vector": vector.tolist()}),
    }
    proxy = run.identities["query"].proxy
    with run.recorder.acting_as("query"):
        for label, event in calls.items():
            before = len(proxy.seen)
            answer = api_events.call(query.handler, event)
            assert answer.status == 200, (label, answer.json)
            run.index_requests_per_api_call[label] = len(proxy.seen) - before
            if label == "POST /uploads":
                run.uploaded_for_query.append(answer.json["key"])
            if label == "POST /search (vector)":
                assert answer.json["results"][0]["id"] == some_id


def _backfill_batch(run: Traffic, uploads: Uploads, monkeypatch: pytest.MonkeyPatch) -> None:
    """One batch of the backfill map into the serving index: an image that never went through ingestion."""
    uploads.put("late/6.jpg", photo(6), ContentType="image/jpeg")
    target = reindex_step(run, monkeypatch, "prepare", input={})["target"]
    deploy(monkeypatch, run.settings("backfill"), backfill_batch.service)
    with run.recorder.acting_as("backfill"):
        answer = backfill_batch.handler(_batch(["cats/0.jpg", "late/6.jpg"], target), ingest_context())
    assert answer["counts"] == {"unchanged": 1, "indexed": 1}, answer


def _second_deployment(
    run: Traffic,
    template: ResolvedTemplate,
    uploads: Uploads,
    second_model: Path,
    admin: OpenSearch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model change: the bootstrap's Update, a backfill batch, live traffic, then the control steps."""
    new = ModelManifest.load(second_model).model_id
    [(_, resource)] = template.of_type("Custom::VectorIndex").items()
    properties = cloudformation_properties(resource["Properties"])
    old = properties["ModelId"]
    properties |= {"Engine": "lucene", "ModelId": new, "ModelUri": properties["ModelUri"].replace(old, new)}
    deploy(monkeypatch, _bootstrap_settings(run, template, model_dir=second_model))
    event = {
        "RequestType": "Update",
        "ResourceType": "Custom::VectorIndex",
        "ResourceProperties": properties,
        "PhysicalResourceId": alias_name(properties["Prefix"], old),
    }
    with run.recorder.acting_as("bootstrap"):
        target = index_bootstrap.handler(event, None)["Data"]["Index"]
    started = boto3.client("stepfunctions", region_name=REGION).list_executions(
        stateMachineArn=properties["StateMachineArn"]
    )["executions"]
    assert len(started) == 1, started

    assert reindex_step(run, monkeypatch, "prepare", input={})["target"] == target
    deploy(monkeypatch, run.settings("backfill", model_dir=second_model), backfill_batch.service)
    listed = uploads.s3.list_objects_v2(Bucket=uploads.bucket)["Contents"]
    with run.recorder.acting_as("backfill"):
        backfill_batch.handler(_batch([o["Key"] for o in listed], target), ingest_context())

    deploy(monkeypatch, run.settings("ingest", model_dir=second_model), ingest.service)
    uploads.put("birds/7.jpg", photo(7), ContentType="image/jpeg")  # reaches both indexes, each model
    _ingest(run, uploads)
    admin.indices.refresh(index=f"{properties['Prefix']}-*")
    deploy(monkeypatch, run.settings("query", model_dir=second_model), query.service)
    with run.recorder.acting_as("query"):  # the serving index's model comes from the models bucket
        answer = api_events.call(query.handler, api_events.post_image("/search", photo(7)))
    assert (answer.status, answer.json["model_id"]) == (200, old), answer.json
    assert answer.json["results"][0]["key"] == "birds/7.jpg"

    for action in ("status", "gate", "switch", "rollback", "switch", "cleanup", "status"):
        run.reindex_steps[action] = reindex_step(run, monkeypatch, action)
    query.service.cache_clear()
    with run.recorder.acting_as("query"):
        answer = api_events.call(query.handler, api_events.post_image("/search", photo(7)))
    assert (answer.status, answer.json["model_id"]) == (200, new), answer.json


def reindex_step(run: Traffic, monkeypatch: pytest.MonkeyPatch, action: str, **event: Any) -> dict[str, Any]:
    """One control step, as the state machine or ``imgsearch reindex --stack`` invokes it."""
    with monkeypatch.context() as inside:
        deploy(inside, run.settings("reindex"), reindex.collection)
        with run.recorder.acting_as("reindex"):
            answer: dict[str, Any] = reindex.handler({"action": action, **event}, ingest_context())
        reindex.collection.cache_clear()
    return answer


def _batch(keys: list[str], target: str) -> dict[str, Any]:
    """What the distributed map hands one backfill invocation (ItemReader items, ItemBatcher input)."""
    return {"Items": [{"Key": key} for key in keys], "BatchInput": {"target": target}}


def _intrude(run: Traffic) -> None:
    """Writes with the query function's identity: each must be refused."""
    client = OpenSearch(hosts=[run.identities[INTRUDER].url], timeout=30, max_retries=0)
    concrete, alias = version_name(run.alias, 1), run.alias
    prefix = run.query_settings.index_prefix
    attempts: dict[str, Callable[[], Any]] = {
        "index a document": lambda: client.index(index=alias, id="intruder", body={"image_id": "intruder"}),
        "bulk write": lambda: client.bulk(body=[{"index": {"_index": alias, "_id": "x"}}, {"image_id": "x"}]),
        "delete a document": lambda: client.delete(index=alias, id=image_id_for(run.bucket, "cats/0.jpg")),
        "create an index": lambda: client.indices.create(index=f"{alias}-v9"),
        "delete the index": lambda: client.indices.delete(index=concrete),
        "serve another index": lambda: client.indices.update_aliases(  # what only a switch may do
            body={
                "actions": [{"add": {"index": f"{prefix}-failures", "alias": alias_name(prefix, "serving")}}]
            }
        ),
    }
    for name, attempt in attempts.items():
        try:
            answer = attempt()
        except os_errors.TransportError as error:
            run.intrusions[name] = {int(error.status_code)}
            continue
        items = answer.get("items", [{"": {"status": 200}}])  # a bulk refuses item by item, inside a 200
        run.intrusions[name] = {int(info["status"]) for item in items for info in item.values()}


def iam_requests(run: Traffic, template: ResolvedTemplate, identity: str) -> list[Request]:
    """What AWS evaluates for everything ``identity`` sent, once per distinct (action, resource)."""
    role = run.identities[identity].role_id
    domain = template.arn(next(iter(template.of_type("AWS::OpenSearchService::Domain"))))
    wanted = {opensearch_request(exchange, domain_arn=domain) for exchange in run.exchanges(identity)}
    calls = run.calls(identity)
    wanted |= {call.iam() for call in calls if not call.presigned_post}
    if any(call.presigned_post for call in calls):  # a browser sends it, with the function's signature
        bucket = function_settings(template, QUERY_HANDLER).images_bucket
        wanted |= {("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}") for key in run.uploaded_for_query}
    policies = identity_policies(template, role)
    return [
        Request(
            principal=role_session(template, role),
            action=action,
            resource=resource,
            context=TLS,
            identity_policies=policies,
            resource_policy=resource_policy(template, resource),
        )
        for action, resource in sorted(wanted)
    ]


def test_the_functions_did_their_work(traffic: Traffic) -> None:
    for identity in HANDLERS:
        assert traffic.exchanges(identity), f"{identity} sent nothing"
    assert traffic.calls("ingest") and traffic.calls("query")
    assert traffic.uploaded_for_query


def test_every_request_the_functions_made_passed_fine_grained_access_control(traffic: Traffic) -> None:
    refused = [
        f"{identity}: {route(exchange)} -> {exchange.status}"
        for identity in HANDLERS
        for exchange in traffic.exchanges(identity)
        if exchange.status in DENIED
    ]
    assert refused == []


def test_writes_with_the_query_identity_are_refused_by_the_security_plugin(traffic: Traffic) -> None:
    assert traffic.intrusions
    assert {name: statuses for name, statuses in traffic.intrusions.items() if statuses != {403}} == {}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_request_recorded_is_allowed_by_the_synthesized_policies(
    traffic: Traffic, profile: str
) -> None:
    template = traffic.templates[profile]
    decisions = {identity: simulate(iam_requests(traffic, template, identity)) for identity in HANDLERS}
    _report(profile, decisions)
    refused = [str(d) for decisions_of in decisions.values() for d in decisions_of if not d.allowed]
    assert refused == []


@pytest.mark.parametrize("profile", PROFILES)
def test_writes_with_the_query_identity_are_denied_by_the_synthesized_policies(
    traffic: Traffic, profile: str
) -> None:
    requests = iam_requests(traffic, traffic.templates[profile], INTRUDER)
    assert len(requests) == len(traffic.intrusions)
    assert [str(d) for d in simulate(requests) if d.allowed] == []


def test_the_bootstrap_turned_the_audit_log_on_as_the_prod_profile_asks(
    traffic: Traffic, secured_opensearch: OpenSearchNode
) -> None:
    """The security plugin kept the configuration the bootstrap sent (it validates it against its schema)."""
    assert traffic.templates["prod"].of_type("Custom::SearchAuditLog")
    admin = OpenSearch(hosts=[secured_opensearch.admin_url])
    config = admin.transport.perform_request("GET", "/_plugins/_security/api/audit")["config"]
    assert config["enabled"] is True
    assert {key: config["audit"][key] for key in AUDIT_CONFIG["audit"]} == AUDIT_CONFIG["audit"]
    assert config["compliance"]["internal_config"] is True


def test_no_api_call_sends_more_index_requests_than_the_query_budget_allows_for(traffic: Traffic) -> None:
    """infra/config.py sizes each request's timeout for INDEX_REQUESTS_PER_QUERY requests per API call."""
    assert max(traffic.index_requests_per_api_call.values()) == INDEX_REQUESTS_PER_QUERY, (
        traffic.index_requests_per_api_call
    )


def test_a_slow_domain_gets_the_apis_503_with_retry_after_inside_the_function_timeout(
    traffic: Traffic,
) -> None:
    """A function that outlives its timeout gets a 502 from API Gateway, never the API's own answer."""
    template = traffic.templates["prod"]
    [function] = [
        f
        for f in template.of_type("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == QUERY_HANDLER
    ]
    with (
        FaultProxy(traffic.identities["query"].proxy.url) as slow,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        slow.stall(seconds=60, times=100)
        user = traffic.identities["query"]
        url = slow.url.replace("http://", f"http://{quote(user.user)}:{quote(user.password, safe='')}@", 1)
        deploy(monkeypatch, replace(traffic.query_settings, opensearch_url=url), query.service)
        started = time.monotonic()
        answer = api_events.call(query.handler, api_events.post_image("/search", photo(1)))
        elapsed = time.monotonic() - started
        query.service.cache_clear()
    assert (answer.status, answer.error_code) == (503, "index_unavailable")
    assert int(answer.headers["retry-after"]) > 0
    assert elapsed < function["Properties"]["Timeout"], f"{elapsed:.1f} s"


def _report(profile: str, decisions: Mapping[str, list[Decision]]) -> None:
    """build/iam/traffic.md: per identity, every distinct request and the statements that allow it."""
    lines = [f"# Recorded traffic against the {profile} template", ""]
    for identity, decided in decisions.items():
        lines += [f"## {identity}", "", "| request | decision | allowed by |", "|---|---|---|"]
        lines += [
            f"| `{d.request.action}` {d.request.resource} | {d.decision} | {d.allowed_by} |" for d in decided
        ]
        lines.append("")
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"traffic-{profile}.md").write_text("\n".join(lines), encoding="utf-8")
