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

Writes attempted with the query function's identity must be refused by both. The engine is lucene,
not the deployed faiss: the node from Maven Central has no faiss libraries (the access checks do not
depend on the engine). What each function sent, and the statements that allow it, is written to
``build/iam/traffic-<profile>.md``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aws_cdk.assertions import Template
from moto import mock_aws
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_errors

from devtools.opensearch_node import ADMIN_PASSWORD, ADMIN_USER, OpenSearchNode
from handlers import index_bootstrap, ingest, query
from handlers.index_bootstrap import AUDIT_CONFIG
from infra.config import INDEX_REQUESTS_PER_QUERY
from infra.packaging import BOOTSTRAP_HANDLER, INGEST_HANDLER, QUERY_HANDLER
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
from tests.faultproxy import Exchange, FaultProxy
from tests.iam.policies import identity_policies, resource_policy, role_of_function, role_session
from tests.iam.simulator import Decision, Request, simulate
from tests.iam.template import REGION, ResolvedTemplate
from tests.image_factories import photo
from tests.infra.conftest import PROFILE_CONTEXT, in_process_stack
from tests.integration.ingest_world import Uploads
from tests.traffic import AwsCallRecorder, Call, opensearch_request, route

pytestmark = pytest.mark.integration

REPORTS = Path(__file__).resolve().parents[2] / "build" / "iam"
HANDLERS = {"bootstrap": BOOTSTRAP_HANDLER, "ingest": INGEST_HANDLER, "query": QUERY_HANDLER}
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
    uploaded_for_query: list[str] = field(default_factory=list)  # keys the query API presigned a POST for
    index_requests_per_api_call: dict[str, int] = field(default_factory=dict)
    intrusions: dict[str, set[int]] = field(default_factory=dict)  # attempt -> the statuses it got

    def exchanges(self, identity: str) -> list[Exchange]:
        return self.identities[identity].proxy.seen

    def calls(self, identity: str) -> list[Call]:
        return [call for call in self.recorder.calls if call.identity == identity]


def cloudformation_properties(value: Any) -> Any:
    """Custom resource properties as CloudFormation hands them over: every scalar becomes a string."""
    if isinstance(value, Mapping):
        return {key: cloudformation_properties(item) for key, item in value.items() if key != "ServiceToken"}
    if isinstance(value, list):
        return [cloudformation_properties(item) for item in value]
    return str(value).lower() if isinstance(value, bool) else str(value)


def function_settings(template: ResolvedTemplate, handler: str, **overrides: Any) -> Settings:
    """The settings the template gives the function of ``handler``, with ``overrides`` for this machine."""
    [function] = [
        f
        for f in template.of_type("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == handler
    ]
    return replace(Settings.from_env(function["Properties"]["Environment"]["Variables"]), **overrides)


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
                user=ADMIN_USER if name == "bootstrap" else f"{name}-function",
                password=ADMIN_PASSWORD if name == "bootstrap" else f"{secrets.token_urlsafe(18)}-Aa1",
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
        )
        _bootstrap(run, deployed, monkeypatch)
        _create_function_users(run, admin)
        uploads = Uploads.of(cloud)
        ingest_settings = function_settings(
            deployed, INGEST_HANDLER, opensearch_url=identities["ingest"].url, **on_this_machine
        )
        _ingest_and_backfill(run, uploads, ingest_settings, monkeypatch)
        admin.indices.refresh(index=f"{ingest_settings.index_prefix}-*")
        _query(run, OnnxEmbedder.load(model_dir, threads=2), monkeypatch)
        _intrude(run)
        yield run
        admin.indices.delete(index=f"{ingest_settings.index_prefix}-*", ignore_unavailable=True)
        for user in ("ingest-function", "query-function"):
            admin.transport.perform_request("DELETE", f"/_plugins/_security/api/internalusers/{user}")


def _bootstrap(run: Traffic, template: ResolvedTemplate, monkeypatch: pytest.MonkeyPatch) -> None:
    """The custom resources' Create events, as the provider framework sends them, run as the master user."""
    admin = run.identities["bootstrap"]
    settings = function_settings(
        template, BOOTSTRAP_HANDLER, opensearch_url=admin.url, opensearch_auth="basic"
    )
    deploy(monkeypatch, settings)
    with run.recorder.acting_as("bootstrap"):
        for kind in ("Custom::SearchAccessRoles", "Custom::SearchAuditLog", "Custom::VectorIndex"):
            for resource in template.of_type(kind).values():
                properties = cloudformation_properties(resource["Properties"])
                if kind == "Custom::VectorIndex":
                    properties["Engine"] = "lucene"  # the node has no faiss libraries
                event = {"RequestType": "Create", "ResourceType": kind, "ResourceProperties": properties}
                index_bootstrap.handler(event, None)


def _create_function_users(run: Traffic, admin: OpenSearch) -> None:
    """One internal user per function, whose backend role is its IAM role's ARN (as the service maps it)."""
    template = run.templates["prod"]
    for name in ("ingest", "query"):
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
    calls = {
        "GET /health": api_events.get("/health"),
        "POST /search (image)": api_events.post_image("/search", photo(1)),
        "POST /search (s3_key)": api_events.post_json("/search", {"s3_key": "dogs/2.jpg", "k": 3}),
        "POST /search (id)": api_events.post_json("/search", {"id": some_id, "filter": {"label": "cats"}}),
        "GET /images/{id}": api_events.get(f"/images/{some_id}"),
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


def _intrude(run: Traffic) -> None:
    """Writes with the query function's identity: each must be refused."""
    client = OpenSearch(hosts=[run.identities[INTRUDER].url], timeout=30, max_retries=0)
    concrete, alias = version_name(run.alias, 1), run.alias
    attempts: dict[str, Callable[[], Any]] = {
        "index a document": lambda: client.index(index=alias, id="intruder", body={"image_id": "intruder"}),
        "bulk write": lambda: client.bulk(body=[{"index": {"_index": alias, "_id": "x"}}, {"image_id": "x"}]),
        "delete a document": lambda: client.delete(index=alias, id=image_id_for(run.bucket, "cats/0.jpg")),
        "create an index": lambda: client.indices.create(index=f"{alias}-v9"),
        "delete the index": lambda: client.indices.delete(index=concrete),
        "move the alias": lambda: client.indices.update_aliases(
            body={"actions": [{"remove": {"index": concrete, "alias": alias}}]}
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
