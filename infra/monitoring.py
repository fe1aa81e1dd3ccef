"""Alarms for what needs a human, one dashboard, and the SNS topic they notify.

The domain's alarms are the ones AWS recommends for OpenSearch Service ("Recommended CloudWatch alarms
for Amazon OpenSearch Service": metric, statistic, threshold, period and consecutive periods as that
table gives them), plus the k-NN plugin's own two.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_opensearchservice as opensearch
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import DeploymentConfig

PERIOD = Duration.minutes(5)
API_P95_LATENCY_MS = 3000  # an embedding takes ~0.1-0.5 s warm; seconds mean cold starts or a slow domain
DURATION_ALARM_FRACTION = 0.8  # of the function timeout
KNN_GRAPH_MEMORY_PERCENT = 80  # of the k-NN circuit breaker limit; at 100 % graphs are evicted
FREE_STORAGE_FRACTION = 0.25  # AWS: "we recommend setting it to 25% of the storage space for each node"


@dataclass(frozen=True)
class AlarmSpec:
    name: str
    metric: cloudwatch.Metric
    threshold: float
    comparison: cloudwatch.ComparisonOperator
    description: str
    periods: int = 1  # consecutive periods in breach before the alarm fires


@dataclass(frozen=True, kw_only=True)
class MonitoringProps:
    config: DeploymentConfig
    domain: opensearch.Domain
    dead_letters: sqs.IQueue
    ingest: lambda_.Function
    query: lambda_.Function
    api: apigw.RestApi


class Monitoring(Construct):
    """Every alarm notifies ``topic``; ``-c alarm_email=...`` subscribes an address to it.

    The topic is encrypted with its own KMS key, because CloudWatch may publish only to topics whose key
    policy lets it use the key (the AWS managed ``aws/sns`` key does not). Its access policy must let
    CloudWatch publish: ``enforce_ssl`` writes a topic policy, which replaces SNS's default one (the one
    that lets the account's own alarms in), so ``_let_alarms_publish`` says it again, for this stack's
    alarms only (confused-deputy conditions: the alarm's ARN and account).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: MonitoringProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._alarm_prefix = f"{stack.stack_name}-"
        key = kms.Key(
            self,
            "TopicKey",
            enable_key_rotation=True,
            description="Encrypts the alarm topic",
            removal_policy=props.config.removal_policy,  # dev: scheduled for deletion with the stack
            pending_window=Duration.days(7),  # the shortest wait KMS allows before deleting a key
        )
        self.topic = sns.Topic(
            self, "Alarms", master_key=key, enforce_ssl=True, display_name="Image search alarms"
        )
        self._let_alarms_publish(key, stack)
        if props.config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(props.config.alarm_email))
        self.alarms = [self._alarm(spec) for spec in self._specs(props)]
        for alarm in self.alarms:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
        self._dashboard(props)

    def _let_alarms_publish(self, key: kms.Key, stack: Stack) -> None:
        """CloudWatch may publish this stack's alarms to the topic, and use the key to do so."""
        alarms = (
            f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:{self._alarm_prefix}*"
        )
        from_this_account = {"StringEquals": {"aws:SourceAccount": stack.account}}
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsPublish",
                principals=[CLOUDWATCH],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={**from_this_account, "ArnLike": {"aws:SourceArn": alarms}},
            )
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsEncrypt",
                principals=[CLOUDWATCH],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions=from_this_account,
            )
        )

    def _alarm(self, spec: AlarmSpec) -> cloudwatch.Alarm:
        return spec.metric.create_alarm(
            self,
            spec.name,
            alarm_name=self._alarm_prefix + spec.name,  # the topic policy admits alarms by this prefix
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            evaluation_periods=spec.periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=spec.description,
        )

    def _specs(self, props: MonitoringProps) -> list[AlarmSpec]:
        return [*_queue_alarms(props), *_function_alarms(props), *_api_alarms(props), *_domain_alarms(props)]

    def _dashboard(self, props: MonitoringProps) -> None:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(alarms=self.alarms, title="Alarms", width=24, height=4)
        )
        for function, title in ((props.ingest, "Ingest function"), (props.query, "Query function")):
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{title}: invocations, errors, throttles",
                    left=[
                        function.metric_invocations(),
                        function.metric_errors(),
                        function.metric_throttles(),
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title=f"{title}: duration p50 / p95",
                    left=[
                        function.metric_duration(statistic="p50"),
                        function.metric_duration(statistic="p95"),
                    ],
                    width=12,
                ),
            )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API: requests, 4xx, 5xx",
                left=[
                    props.api.metric_count(),
                    props.api.metric_client_error(),
                    props.api.metric_server_error(),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API latency p50 / p95",
                left=[props.api.metric_latency(statistic="p50"), props.api.metric_latency(statistic="p95")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Dead letters",
                left=[props.dead_letters.metric_approximate_number_of_messages_visible()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Domain: JVM pressure, k-NN graph memory (%)",
                left=[
                    props.domain.metric_jvm_memory_pressure(),
                    props.domain.metric("KNNGraphMemoryUsagePercentage", statistic="Maximum"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Domain: free storage (MB)", left=[props.domain.metric_free_storage_space()], width=8
            ),
        )


CLOUDWATCH = iam.ServicePrincipal("cloudwatch.amazonaws.com")
_AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
_ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
_AT_MOST = cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD
_BELOW = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD


def _queue_alarms(props: MonitoringProps) -> list[AlarmSpec]:
    depth = props.dead_letters.metric_approximate_number_of_messages_visible(
        period=PERIOD, statistic="Maximum"
    )
    return [
        AlarmSpec(
            "DeadLetters", depth, 1, _AT_LEAST, "Uploads failed repeatedly: inspect and redrive the DLQ"
        )
    ]


def _function_alarms(props: MonitoringProps) -> list[AlarmSpec]:
    specs = []
    for name, function in (("Ingest", props.ingest), ("Query", props.query)):
        timeout = function.timeout.to_milliseconds() if function.timeout else 3000
        what = f"the {name.lower()} function"
        specs += [
            AlarmSpec(
                f"{name}Errors", function.metric_errors(period=PERIOD), 1, _AT_LEAST, f"{what} raised errors"
            ),
            AlarmSpec(
                f"{name}Throttles",
                function.metric_throttles(period=PERIOD),
                1,
                _AT_LEAST,
                f"{what} was throttled: its concurrency cap was reached",
            ),
            AlarmSpec(
                f"{name}Duration",
                function.metric_duration(period=PERIOD, statistic="p95"),
                timeout * DURATION_ALARM_FRACTION,
                _ABOVE,
                f"p95 duration of {what} is near its timeout",
                periods=2,
            ),
        ]
    return specs


def _api_alarms(props: MonitoringProps) -> list[AlarmSpec]:
    latency = props.api.metric_latency(period=PERIOD, statistic="p95")
    return [
        AlarmSpec(
            "Api5xx", props.api.metric_server_error(period=PERIOD), 1, _AT_LEAST, "the API answered 5xx"
        ),
        AlarmSpec(
            "ApiLatencyP95",
            latency,
            API_P95_LATENCY_MS,
            _ABOVE,
            f"p95 latency of the query API is above {API_P95_LATENCY_MS} ms",
            periods=2,
        ),
    ]


@dataclass(frozen=True)
class DomainAlarm:
    """One row of AWS's recommended-alarms table: ``metric`` ``statistic`` ``comparison`` ``threshold``
    for ``period`` minutes, ``periods`` consecutive times."""

    name: str
    metric: str
    statistic: str
    comparison: cloudwatch.ComparisonOperator
    threshold: float
    period_minutes: int
    periods: int
    description: str


def recommended_domain_alarms(config: DeploymentConfig) -> list[DomainAlarm]:
    """AWS's recommended alarms that apply to this deployment's domain (masters only when it has them)."""
    nodes = config.data_nodes + config.master_nodes
    free_mib = config.volume_gb * 1024 * FREE_STORAGE_FRACTION
    rows = [
        DomainAlarm("DomainRed", "ClusterStatus.red", "Maximum", _AT_LEAST, 1, 1, 1,
                    "a primary shard and its replicas are unassigned: searches miss data"),
        DomainAlarm("DomainYellow", "ClusterStatus.yellow", "Maximum", _AT_LEAST, 1, 1, 5,
                    "a replica shard is unassigned"),
        DomainAlarm("FreeStorage", "FreeStorageSpace", "Minimum", _AT_MOST, free_mib, 1, 1,
                    "a data node has a quarter of its storage left"),
        DomainAlarm("IndexWritesBlocked", "ClusterIndexWritesBlocked", "Maximum", _AT_LEAST, 1, 5, 1,
                    "the domain blocks writes: uploads are not indexed"),
        DomainAlarm("NodesMissing", "Nodes", "Minimum", _BELOW, nodes, 24 * 60, 1,
                    "a node has been unreachable for a day"),
        DomainAlarm("SnapshotFailed", "AutomatedSnapshotFailure", "Maximum", _AT_LEAST, 1, 1, 1,
                    "an automated snapshot failed"),
        DomainAlarm("DomainCpu", "CPUUtilization", "Maximum", _AT_LEAST, 80, 15, 3,
                    "sustained high CPU: use larger or more data nodes"),
        DomainAlarm("JvmMemoryPressure", "JVMMemoryPressure", "Maximum", _AT_LEAST, 95, 1, 3,
                    "the heap is nearly full: out-of-memory errors ahead"),
        DomainAlarm("OldGenJvmMemoryPressure", "OldGenJVMMemoryPressure", "Maximum", _AT_LEAST, 80, 1, 3,
                    "the old generation is nearly full: out-of-memory errors ahead"),
        DomainAlarm("KmsKeyError", "KMSKeyError", "Maximum", _AT_LEAST, 1, 1, 1,
                    "the key that encrypts the domain at rest is disabled"),
        DomainAlarm("KmsKeyInaccessible", "KMSKeyInaccessible", "Maximum", _AT_LEAST, 1, 1, 1,
                    "the key that encrypts the domain at rest is gone: restore from a snapshot"),
        DomainAlarm("ActiveShards", "shards.active", "Maximum", _AT_LEAST, 30000, 1, 1,
                    "over 30,000 shards: too many indexes"),
    ]  # fmt: skip
    if config.master_nodes:
        rows += [
            DomainAlarm("MasterCpu", "MasterCPUUtilization", "Maximum", _AT_LEAST, 50, 15, 3,
                        "dedicated masters are busy: use a larger master type"),
            DomainAlarm("MasterJvmMemoryPressure", "MasterJVMMemoryPressure", "Maximum", _AT_LEAST, 95, 1, 3,
                        "a dedicated master's heap is nearly full"),
            DomainAlarm("MasterOldGenJvmMemoryPressure", "MasterOldGenJVMMemoryPressure", "Maximum",
                        _AT_LEAST, 80, 1, 3, "a dedicated master's old generation is nearly full"),
        ]  # fmt: skip
    return rows


def _domain_alarms(props: MonitoringProps) -> list[AlarmSpec]:
    domain = props.domain
    recommended = [
        AlarmSpec(
            row.name,
            domain.metric(row.metric, statistic=row.statistic, period=Duration.minutes(row.period_minutes)),
            row.threshold,
            row.comparison,
            row.description,
            periods=row.periods,
        )
        for row in recommended_domain_alarms(props.config)
    ]
    # k-NN metrics of OpenSearch Service (AWS/ES namespace), per the service's "k-NN metrics" table.
    graph_memory = domain.metric("KNNGraphMemoryUsagePercentage", period=PERIOD, statistic="Maximum")
    breaker = domain.metric("KNNCircuitBreakerTriggered", period=PERIOD, statistic="Maximum")
    return [
        *recommended,
        AlarmSpec(
            "KnnGraphMemory",
            graph_memory,
            KNN_GRAPH_MEMORY_PERCENT,
            _ABOVE,
            "k-NN graphs fill their memory cache: graphs get evicted and searches slow down",
            periods=3,
        ),
        AlarmSpec(
            "KnnCircuitBreaker", breaker, 1, _AT_LEAST, "the k-NN circuit breaker tripped: writes fail"
        ),
    ]
