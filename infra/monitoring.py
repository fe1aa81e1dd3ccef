"""Alarms for what needs a human, one dashboard, and the SNS topic they notify."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
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
JVM_PRESSURE_PERCENT = 80  # AWS's recommended alarm threshold
KNN_GRAPH_MEMORY_PERCENT = 80  # of the k-NN circuit breaker limit; at 100 % graphs are evicted
FREE_STORAGE_FRACTION = 0.25  # AWS recommends alarming below 25 % of a node's storage


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
    policy lets it use the key (the AWS managed ``aws/sns`` key does not).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: MonitoringProps) -> None:
        super().__init__(scope, construct_id)
        key = kms.Key(self, "TopicKey", enable_key_rotation=True, description="Encrypts the alarm topic")
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(
            self, "Alarms", master_key=key, enforce_ssl=True, display_name="Image search alarms"
        )
        if props.config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(props.config.alarm_email))
        self.alarms = [self._alarm(spec) for spec in self._specs(props)]
        for alarm in self.alarms:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
        self._dashboard(props)

    def _alarm(self, spec: AlarmSpec) -> cloudwatch.Alarm:
        return spec.metric.create_alarm(
            self,
            spec.name,
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


_AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
_ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
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


def _domain_alarms(props: MonitoringProps) -> list[AlarmSpec]:
    domain, minute = props.domain, Duration.minutes(1)
    free_mb = props.config.volume_gb * 1024 * FREE_STORAGE_FRACTION
    # k-NN metrics of OpenSearch Service (AWS/ES namespace), per the service's "k-NN metrics" table.
    graph_memory = domain.metric("KNNGraphMemoryUsagePercentage", period=PERIOD, statistic="Maximum")
    breaker = domain.metric("KNNCircuitBreakerTriggered", period=PERIOD, statistic="Maximum")
    return [
        AlarmSpec(
            "DomainRed",
            domain.metric_cluster_status_red(period=minute),
            1,
            _AT_LEAST,
            "a primary shard is unassigned: searches miss data",
        ),
        AlarmSpec(
            "DomainYellow",
            domain.metric_cluster_status_yellow(period=minute),
            1,
            _AT_LEAST,
            "a replica shard is unassigned",
            periods=5,
        ),
        AlarmSpec(
            "FreeStorage",
            domain.metric_free_storage_space(period=minute),
            free_mb,
            _BELOW,
            "a data node has less than a quarter of its storage left",
        ),
        AlarmSpec(
            "JvmMemoryPressure",
            domain.metric_jvm_memory_pressure(period=PERIOD),
            JVM_PRESSURE_PERCENT,
            _ABOVE,
            "JVM memory pressure is high",
            periods=3,
        ),
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
