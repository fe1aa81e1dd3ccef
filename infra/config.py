"""What one deployment looks like: a profile (``dev`` or ``prod``) plus CDK context overrides.

``-c profile=prod`` picks the defaults; any field below can then be overridden by name, e.g.
``-c data_nodes=4 -c api_auth=iam``. Values from ``-c`` arrive as strings and values from ``cdk.json`` as
JSON, so both are parsed by the field's type. A lower-case context key that names no field is a typo and
stops synth, because a silently ignored setting deploys something else than was asked for.
``docs/deploy.md`` documents every field (a test checks it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, get_args

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

from simsearch.delivery import INGEST_BATCH_SIZE, SLOW_MODEL_INGEST_BATCH_SIZE
from simsearch.errors import ConfigError

Profile = Literal["dev", "prod"]
ModelName = Literal["resnet50", "mobilenet_v2"]
ApiAuth = Literal["api_key", "iam"]

_USER_KEY = re.compile(r"[a-z][a-z0-9_]*")  # CDK's own keys carry ':' or '@' and are left alone
STACK_NAME = "ImageSearch"
"""The CloudFormation stack that app.py synthesises (preflight looks up what a deployed one holds)."""
QUERY_RESERVE_S = 5.0
"""Of the query function's timeout, what is kept for all that is not the index: embedding the image,
reading it from S3, presigning the results' links."""
INDEX_REQUESTS_PER_QUERY = 4
"""The most OpenSearch requests one API call makes: which index serves (its pointer, read again every
``simsearch.targets.SERVING_TTL_S``), then for an image's duplicates GET its document, search the
documents of its content, and search its neighbours; the integration suite checks it against the
requests the deployed function really sends."""
QUERY_INDEX_RETRIES = 1
MIN_QUERY_INDEX_TIMEOUT_S = 0.5
MAX_BACKFILL_BATCH = 100
"""Keys per backfill batch: S3 keys are up to 1 KB and a Lambda invocation's payload at most 256 KB."""
MAX_INGEST_BATCH = 10_000
"""Messages per ingest invocation: Lambda's limit for a standard queue once a batching window is set
(the uploads queue has one)."""
UNRESERVED_MINIMUM = 100
"""Lambda keeps at least this much of an account's concurrency unreserved: reserved and provisioned
concurrency may take only "the unreserved account concurrency minus 100" (Lambda developer guide,
"Configuring reserved concurrency"); a deployment that asks for more fails halfway through."""


@dataclass(frozen=True, kw_only=True)
class DeploymentConfig:
    """Every choice that differs between deployments; the field names are the context keys."""

    profile: Profile
    engine_version: str = "2.19"
    model: ModelName = "resnet50"
    weights: str = ""  # local path of the checkpoint; empty: torch's cache, ours, or a verified download
    weights_tag: str = ""  # the checkpoint's release (e.g. IMAGENET1K_V2); empty: the converter's default
    model_dir: str = ""  # a model directory built beforehand (e.g. by model.whiten); replaces model/weights
    data_node_type: str
    data_nodes: int
    master_node_type: str
    master_nodes: int  # 0: no dedicated master nodes
    availability_zones: int  # 1: no zone awareness
    volume_gb: int
    index_replicas: int
    vpc: bool = False
    destroy_on_delete: bool  # domain, bucket, logs and index are deleted with the stack
    access_logs: bool
    audit_logs: bool  # the security plugin's audit log (logins, refused requests, security changes)
    log_retention_days: int
    index_prefix: str = "images"
    ingest_memory_mb: int = 2048
    ingest_timeout_s: int = 60
    ingest_batch_size: int = 0  # 0: by model (ingest_batch); else 1..10,000
    ingest_max_concurrency: int  # SQS event source cap: at most this many batches hit the domain at once
    ingest_reserved_concurrency: int  # 0: none reserved (a new account has only 10 to share)
    backfill_batch_size: int = 20  # objects per backfill invocation (the distributed map's ItemBatcher)
    backfill_max_concurrency: int  # batches at once (MaxConcurrency); at most ingest_max_concurrency
    backfill_timeout_s: int = 300
    backfill_tolerated_failure_percent: int = 1  # batches that may still fail; a redrive retries them
    reindex_auto_switch: bool  # switch once the gate passes; false: `imgsearch reindex switch` does it
    inventory: bool  # a daily S3 Inventory of the images bucket: a backfill may read it instead of listing
    query_memory_mb: int = 2048
    query_timeout_s: int = 15
    query_provisioned_concurrency: int
    account_concurrency: int = 0  # the account's Lambda concurrency quota here; 0: not stated
    api_auth: ApiAuth = "api_key"
    throttle_rate: int
    throttle_burst: int
    cors_origin: str = "*"
    alarm_email: str = ""

    @property
    def ingest_batch(self) -> int:
        """Messages per ingest invocation: ``ingest_batch_size``, else what suits the model's speed
        (``simsearch.delivery``); a ``model_dir``'s model counts as slow, since its speed is not known."""
        if self.ingest_batch_size:
            return self.ingest_batch_size
        fast = self.model == "mobilenet_v2" and not self.model_dir
        return INGEST_BATCH_SIZE if fast else SLOW_MODEL_INGEST_BATCH_SIZE

    @property
    def removal_policy(self) -> RemovalPolicy:
        """What happens to stateful resources (domain, bucket, logs) when the stack is deleted."""
        return RemovalPolicy.DESTROY if self.destroy_on_delete else RemovalPolicy.RETAIN

    @classmethod
    def from_context(cls, context: Mapping[str, Any], *, quota_measured: bool = False) -> DeploymentConfig:
        """The profile named by ``context["profile"]`` (default ``dev``) with every override applied.

        ``quota_measured=True`` leaves out the one rule that needs ``account_concurrency`` stated: preflight
        reads the quota from the account instead, and telling the user that number is its point.

        Raises:
            ConfigError: naming every unknown key and every value that does not parse, all at once.
        """
        profile = str(context.get("profile", "dev"))
        if profile not in PROFILES:
            raise ConfigError(f"context profile={profile!r}; use one of {sorted(PROFILES)}")
        known = {f.name: f for f in fields(cls)}
        problems = [
            f"unknown context key {key!r}; known keys: {', '.join(sorted(known))}"
            for key in context
            if _USER_KEY.fullmatch(key) and key not in known
        ]
        overrides: dict[str, object] = {}
        for name, field in known.items():
            if name in context and name != "profile":
                try:
                    overrides[name] = _parse(context[name], field.type)
                except ValueError as error:
                    problems.append(f"context {name}={context[name]!r}: {error}")
        if problems:
            raise ConfigError("invalid CDK context: " + "; ".join(problems))
        config = replace(PROFILES[profile], **overrides)  # type: ignore[arg-type]  # parsed by field type
        config.check(quota_measured=quota_measured)
        return config

    @property
    def query_index_timeout_s(self) -> float:
        """How long each OpenSearch request of the query function may take, each attempt included.

        Every attempt of every request then ends inside the function's timeout, so a slow domain gets the
        API's own 503 with Retry-After: a function that times out gets a 502 from API Gateway instead.
        """
        attempts = INDEX_REQUESTS_PER_QUERY * (1 + QUERY_INDEX_RETRIES)
        return (self.query_timeout_s - QUERY_RESERVE_S) / attempts

    @property
    def committed_concurrency(self) -> int:
        """Concurrency taken from the account: reserved for ingestion plus provisioned for queries."""
        return self.ingest_reserved_concurrency + self.query_provisioned_concurrency

    def check(self, *, quota_measured: bool = False) -> None:
        """Reject combinations AWS would refuse only halfway through a deployment."""
        rules = self._rules() if quota_measured else [*self._rules(), self._concurrency_rule()]
        problems = [message for broken, message in rules if broken]
        if problems:
            raise ConfigError("inconsistent deployment settings: " + "; ".join(problems))

    @staticmethod
    def _shortest_query_timeout_s() -> int:
        attempts = INDEX_REQUESTS_PER_QUERY * (1 + QUERY_INDEX_RETRIES)
        return math.ceil(QUERY_RESERVE_S + MIN_QUERY_INDEX_TIMEOUT_S * attempts)

    def _concurrency_rule(self) -> tuple[bool, str]:
        committed, needed = self.committed_concurrency, self.committed_concurrency + UNRESERVED_MINIMUM
        what = (
            f"profile {self.profile} reserves {self.ingest_reserved_concurrency} concurrent executions for "
            f"ingestion and provisions {self.query_provisioned_concurrency} for queries; Lambda must keep "
            f"{UNRESERVED_MINIMUM} unreserved, so the account's concurrency quota must be at least {needed}"
        )
        fix = (
            "see your quota with `aws lambda get-account-settings` (AccountLimit.ConcurrentExecutions; "
            "new accounts have 10) or `make preflight`, then pass it as -c account_concurrency=N, or deploy "
            "without them: -c ingest_reserved_concurrency=0 -c query_provisioned_concurrency=0"
        )
        if committed and not self.account_concurrency:
            return True, f"{what}: state the quota ({fix})"
        if committed and self.account_concurrency < needed:
            return True, f"{what}, and account_concurrency={self.account_concurrency} is below it ({fix})"
        return False, ""

    def _rules(self) -> list[tuple[bool, str]]:
        return [
            (
                self.data_nodes % self.availability_zones != 0,
                "data_nodes must be a multiple of availability_zones",
            ),
            (self.availability_zones not in (1, 2, 3), "availability_zones must be 1, 2 or 3"),
            (self.master_nodes not in (0, 3, 5), "master_nodes must be 0, 3 or 5 (a quorum)"),
            (
                self.index_replicas >= self.data_nodes,
                "index_replicas must be below data_nodes or shards never assign",
            ),
            (
                self.ingest_max_concurrency < 2,
                "ingest_max_concurrency must be at least 2 (SQS event source minimum)",
            ),
            (
                0 < self.ingest_reserved_concurrency < self.ingest_max_concurrency,
                "ingest_reserved_concurrency, when set, must be at least ingest_max_concurrency",
            ),
            (self.query_timeout_s > 29, "query_timeout_s must be at most 29 (API Gateway waits 29 s)"),
            (
                self.query_index_timeout_s < MIN_QUERY_INDEX_TIMEOUT_S,
                f"query_timeout_s must be at least {self._shortest_query_timeout_s()} s: "
                f"{QUERY_RESERVE_S:g} s for the embedding and {MIN_QUERY_INDEX_TIMEOUT_S:g} s for each "
                f"attempt of up to {INDEX_REQUESTS_PER_QUERY} index requests",
            ),
            (not 1 <= self.ingest_timeout_s <= 900, "ingest_timeout_s must be 1..900 (Lambda's maximum)"),
            (not 128 <= self.ingest_memory_mb <= 10240, "ingest_memory_mb must be 128..10240"),
            (not 128 <= self.query_memory_mb <= 10240, "query_memory_mb must be 128..10240"),
            (
                not 0 <= self.ingest_batch_size <= MAX_INGEST_BATCH,
                f"ingest_batch_size must be 1..{MAX_INGEST_BATCH:,} (a standard queue's event source with a "
                "batching window), or 0 for the model's default",
            ),
            (
                not 1 <= self.backfill_batch_size <= MAX_BACKFILL_BATCH,
                f"backfill_batch_size must be 1..{MAX_BACKFILL_BATCH} (a batch's keys travel in one 256 KB "
                "invocation payload)",
            ),
            (
                not 1 <= self.backfill_max_concurrency <= self.ingest_max_concurrency,
                "backfill_max_concurrency must be 1..ingest_max_concurrency: the domain is sized for that "
                "many concurrent writers (raise both to backfill faster on a larger domain)",
            ),
            (
                not 1 <= self.backfill_timeout_s <= 900,
                "backfill_timeout_s must be 1..900 (Lambda's maximum)",
            ),
            (
                not 0 <= self.backfill_tolerated_failure_percent <= 100,
                "backfill_tolerated_failure_percent must be 0..100",
            ),
            (
                self.log_retention_days not in RETENTION,
                f"log_retention_days must be one of {sorted(RETENTION)}",
            ),
        ]


# The retention periods CloudWatch Logs accepts, by days.
RETENTION: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

PROFILES: dict[str, DeploymentConfig] = {
    # Cheapest sensible: one burstable data node, no replicas, everything deleted with the stack.
    "dev": DeploymentConfig(
        profile="dev",
        data_node_type="t3.medium.search",
        data_nodes=1,
        master_node_type="",
        master_nodes=0,
        availability_zones=1,
        volume_gb=10,
        index_replicas=0,
        destroy_on_delete=True,
        access_logs=False,
        audit_logs=False,
        log_retention_days=7,
        ingest_max_concurrency=2,
        ingest_reserved_concurrency=0,
        backfill_max_concurrency=2,
        reindex_auto_switch=True,
        inventory=False,
        query_provisioned_concurrency=0,
        throttle_rate=10,
        throttle_burst=20,
    ),
    # Two AZs, a replica of every shard, three dedicated masters, and data kept when the stack goes.
    "prod": DeploymentConfig(
        profile="prod",
        data_node_type="r6g.large.search",
        data_nodes=2,
        master_node_type="m6g.large.search",
        master_nodes=3,
        availability_zones=2,
        volume_gb=100,
        index_replicas=1,
        destroy_on_delete=False,
        access_logs=True,
        audit_logs=True,
        log_retention_days=90,
        ingest_max_concurrency=10,
        ingest_reserved_concurrency=10,
        backfill_max_concurrency=10,
        reindex_auto_switch=False,  # an operator looks at `imgsearch reindex status`, then switches
        inventory=True,
        query_provisioned_concurrency=1,
        throttle_rate=50,
        throttle_burst=100,
    ),
}


def _parse(raw: object, annotation: object) -> object:
    """Parse a context value (a JSON value from cdk.json, or a string from ``-c``) by field type."""
    if annotation in ("bool", bool):
        return _parse_bool(raw)
    if annotation in ("int", int):
        if isinstance(raw, bool) or not re.fullmatch(r"-?\d+", str(raw)):
            raise ValueError("must be an integer")
        return int(str(raw))
    choices = _LITERALS.get(str(annotation))
    if choices is not None and raw not in choices:
        raise ValueError(f"must be one of {list(choices)}")
    return str(raw)


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "false"):
        return str(raw).lower() == "true"
    raise ValueError("must be true or false")


_LITERALS: dict[str, tuple[str, ...]] = {
    "Profile": get_args(Profile),
    "ModelName": get_args(ModelName),
    "ApiAuth": get_args(ApiAuth),
}
