"""CloudFormation custom resources that prepare the search domain (``infra/index_bootstrap.py``).

Runs as the domain's fine-grained access control master user. Three resource types:

- ``Custom::SearchAccessRoles``: OpenSearch roles plus their mappings to the functions' IAM roles;
- ``Custom::SearchAuditLog``: the security plugin's audit logging on (off when deleted), which the
  domain publishes to CloudWatch Logs once the stack enables audit-log publishing;
- ``Custom::VectorIndex``: the bundle's model copied to the models bucket, the model's k-NN index
  (``mapping.index_body``: the code and the tests build the same index) attached to the deployment's
  pointers (``simsearch.reindex.attach``: it takes writes, and serves if nothing serves yet), and the
  failures index. When another model serves, this is a model change: the re-index state machine is
  started to fill the new index.

Create and Update are idempotent: they (re)apply the desired state and never drop data. Delete removes
the roles and leaves every index alone: a model change replaces ``Custom::VectorIndex`` (its physical id
names the model), and the old index keeps serving until the re-index switches; when the whole stack
goes, the dev profile's domain goes with it and the prod profile's is retained with its data.
Properties arrive as strings, because CloudFormation passes every custom resource property value as one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast, get_args

from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_errors

from simsearch import models, reindex
from simsearch.errors import ConfigError, IndexUnavailableError
from simsearch.index.mapping import SLOW_LOG_THRESHOLDS
from simsearch.index.naming import alias_name, failures_name
from simsearch.index.opensearch import IndexConfig, OpenSearchFailureLog, client_for
from simsearch.index.opensearch_collection import OpenSearchCollection
from simsearch.settings import Engine, Settings, SpaceType

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

SECURITY_API = "/_plugins/_security/api"
AUDIT_CONFIG: dict[str, Any] = {
    # What is worth an operator's attention, not every granted request: failed logins, refused
    # requests, bad headers, attempts on the security index, and changes to the security configuration.
    "audit": {
        "enable_rest": True,
        "enable_transport": True,
        "disabled_rest_categories": ["AUTHENTICATED", "GRANTED_PRIVILEGES"],
        "disabled_transport_categories": ["AUTHENTICATED", "GRANTED_PRIVILEGES"],
        "log_request_body": False,  # bodies hold vectors and image metadata: volume, not evidence
        "resolve_indices": True,
        "resolve_bulk_requests": False,
        "exclude_sensitive_headers": True,
        "ignore_users": [],
        "ignore_requests": [],
    },
    "compliance": {
        "enabled": True,
        "internal_config": True,  # who changed roles and role mappings
        "external_config": False,
        "read_metadata_only": True,
        "read_watched_fields": {},
        "read_ignore_users": [],
        "write_metadata_only": True,
        "write_log_diffs": False,
        "write_watched_indices": [],
        "write_ignore_users": [],
    },
}
RETRY_DELAYS_S = (5, 10, 20, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30)  # ~6 minutes in all
_TRANSIENT_STATUS = (401, 403, 429, 500, 502, 503, 504)  # 401/403: the access policy is still propagating
T = TypeVar("T")


def handler(event: dict[str, Any], _context: object) -> dict[str, Any]:
    """The ``onEvent`` handler of the CDK custom resource provider."""
    request, kind = event["RequestType"], event["ResourceType"]
    properties: Mapping[str, Any] = event["ResourceProperties"]
    logger.info("custom resource event: %s %s", request, kind)
    client = client_for(Settings.from_env(), timeout=30.0)
    if kind == "Custom::SearchAccessRoles":
        return with_retries(lambda: access_roles(client, request, properties))
    if kind == "Custom::SearchAuditLog":
        return with_retries(lambda: audit_log(client, request))
    if kind == "Custom::VectorIndex":
        physical_id = event.get("PhysicalResourceId", "")
        return with_retries(
            lambda: vector_index(
                client,
                request,
                properties,
                physical_id,
                publish_model=publish_carried_model,
                start_reindex=start_execution,
            )
        )
    raise ConfigError(f"unknown custom resource type {kind!r}")


def access_roles(client: OpenSearch, request: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Put each OpenSearch role and map it to exactly the IAM roles named (or delete both)."""
    roles: Mapping[str, Mapping[str, Any]] = properties["Roles"]
    for name, spec in roles.items():
        if request == "Delete":
            _delete_ignoring_missing(client, f"{SECURITY_API}/rolesmapping/{name}")
            _delete_ignoring_missing(client, f"{SECURITY_API}/roles/{name}")
            continue
        role = {key: spec[key] for key in ("cluster_permissions", "index_permissions")}
        client.transport.perform_request("PUT", f"{SECURITY_API}/roles/{name}", body=role)
        mapping = {"backend_roles": list(spec["backend_roles"])}
        client.transport.perform_request("PUT", f"{SECURITY_API}/rolesmapping/{name}", body=mapping)
    return {"PhysicalResourceId": ",".join(sorted(roles))}


def audit_log(client: OpenSearch, request: str) -> dict[str, Any]:
    """Turn the security plugin's audit logging on with ``AUDIT_CONFIG`` (Delete turns it off)."""
    body = {"enabled": request != "Delete", **AUDIT_CONFIG}
    client.transport.perform_request("PUT", f"{SECURITY_API}/audit/config", body=body)
    return {"PhysicalResourceId": "audit-log"}


def vector_index(
    client: OpenSearch,
    request: str,
    properties: Mapping[str, Any],
    physical_id: str,
    *,
    publish_model: Callable[[str], None],
    start_reindex: Callable[[str, str], None],
) -> dict[str, Any]:
    """Publish the model, create and attach its index and the failures index; re-index on a model change.

    ``publish_model(model_uri)`` copies the carried model there; ``start_reindex(state_machine_arn,
    target)`` starts the backfill of ``target`` (Step Functions). A re-index starts when this resource
    names a new model (a Create, or an Update whose physical id changes) and another index serves: an
    update that changes anything else leaves a running or finished re-index alone.
    """
    if request == "Delete":
        logger.info("keeping the indexes of %s (see the module docstring)", physical_id)
        return {"PhysicalResourceId": physical_id}
    config = IndexConfig(
        dim=int(properties["Dimension"]),
        engine=cast(Engine, _choice(properties["Engine"], get_args(Engine), name="Engine")),
        space_type=cast(SpaceType, _choice(properties["SpaceType"], get_args(SpaceType), name="SpaceType")),
        m=int(properties["M"]),
        ef_construction=int(properties["EfConstruction"]),
        ef_search=int(properties["EfSearch"]),
    )
    prefix, model_id, model_uri = (str(properties[key]) for key in ("Prefix", "ModelId", "ModelUri"))
    publish_model(model_uri)
    collection = OpenSearchCollection(client, prefix=prefix, config=config)
    attached = reindex.attach(collection, model_id=model_id, model_uri=model_uri, dim=config.dim)
    replicas, failures = int(properties["Replicas"]), failures_name(prefix)
    OpenSearchFailureLog(client, name=failures).ensure()
    target = attached.info.name
    client.indices.put_settings(index=target, body={"index": _dynamic_settings(config, replicas=replicas)})
    client.indices.put_settings(index=failures, body={"index": {"number_of_replicas": replicas}})
    new_id = alias_name(prefix, model_id)
    if attached.building and new_id != physical_id:
        logger.info("model change: %s serves, re-indexing into %s", attached.serving.name, target)
        start_reindex(str(properties["StateMachineArn"]), target)
    return {"PhysicalResourceId": new_id, "Data": {"Index": target}}


def publish_carried_model(model_uri: str) -> None:
    """Copy the model this bundle carries to ``model_uri`` (``simsearch.models.publish``)."""
    import boto3  # in the Lambda runtime

    settings = Settings.from_env()
    if models.publish(settings.model_dir, model_uri, s3=boto3.client("s3", region_name=settings.aws_region)):
        logger.info("published model to %s", model_uri)


def start_execution(state_machine_arn: str, target: str) -> None:
    """Start the backfill of ``target`` (a second one into the same index would only find it done)."""
    import boto3  # in the Lambda runtime

    name = f"reindex-{int(time.time())}-{target}"[:80]  # execution names: at most 80 characters
    boto3.client("stepfunctions").start_execution(
        stateMachineArn=state_machine_arn, name=name, input=json.dumps({"target": target, "prefix": ""})
    )


def _dynamic_settings(config: IndexConfig, *, replicas: int) -> dict[str, Any]:
    """Replicas, slow-log thresholds and faiss's ef_search: what an existing index can still change.

    ``m``, ``ef_construction`` and the engine are fixed at creation, and indexes are per model: an
    update leaves an existing index as it is, and the new values reach the index of the next model.
    """
    settings: dict[str, Any] = {"number_of_replicas": replicas, **SLOW_LOG_THRESHOLDS}
    if config.engine == "faiss":
        settings["knn.algo_param.ef_search"] = config.ef_search
    return settings


def _delete_ignoring_missing(client: OpenSearch, path: str) -> None:
    try:
        client.transport.perform_request("DELETE", path)
    except os_errors.NotFoundError:
        logger.info("already gone: %s", path)


def with_retries(action: Callable[[], T], *, delays: Sequence[float] = RETRY_DELAYS_S) -> T:
    """Run ``action``; retry after each of ``delays`` while the domain or its access policy is not ready."""
    for delay in (*delays, None):
        try:
            return action()
        except (os_errors.TransportError, IndexUnavailableError, ConfigError) as error:
            if delay is None or not _is_transient(error):
                raise
            logger.warning("domain not ready (%s); retrying in %s s", error, delay)
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _is_transient(error: Exception) -> bool:
    cause = error.__cause__ if isinstance(error, ConfigError | IndexUnavailableError) else error
    if isinstance(error, IndexUnavailableError) or isinstance(cause, os_errors.ConnectionError):
        return True
    return isinstance(cause, os_errors.TransportError) and cause.status_code in _TRANSIENT_STATUS


def _choice(raw: object, allowed: tuple[str, ...], *, name: str) -> str:
    if raw not in allowed:
        raise ConfigError(f"{name} is {raw!r}; expected one of {list(allowed)}")
    return str(raw)
