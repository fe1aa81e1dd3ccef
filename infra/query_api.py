"""The query API: a REST API in front of one query function."""

from __future__ import annotations

from dataclasses import dataclass, replace

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from handlers.gateway import BINARY_MEDIA_TYPES
from infra.config import QUERY_INDEX_RETRIES, DeploymentConfig
from infra.functions import FunctionSpec, managed_policy_finding, python_function
from infra.governance import acknowledge
from infra.image_store import ImageStore
from infra.log_groups import log_group
from infra.network import Network
from infra.packaging import QUERY_HANDLER
from simsearch.settings import Settings

STAGE = "v1"
# (method, path, required request parameters): the API's routes, validated before the function runs.
ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("POST", "search", ("method.request.header.Content-Type",)),
    ("POST", "uploads", ()),
    ("GET", "images/{id}", ("method.request.path.id",)),
    ("GET", "images/{id}/duplicates", ("method.request.path.id",)),
    ("GET", "health", ()),
    ("GET", "openapi.json", ()),
)
CORS_HEADERS = ("Content-Type", "X-Api-Key", "Authorization", "X-Amz-Date", "X-Amz-Security-Token")


@dataclass(frozen=True, kw_only=True)
class QueryApiProps:
    config: DeploymentConfig
    settings: Settings
    code: lambda_.Code
    store: ImageStore
    network: Network | None


class QueryApi(Construct):
    """Every route goes to the query function through its ``live`` alias (provisioned concurrency sits there).

    Callers authenticate with an API key tied to a usage plan (default) or with SigV4 (``-c api_auth=iam``);
    the stage throttles, logs every request as JSON, and traces.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: QueryApiProps) -> None:
        super().__init__(scope, construct_id)
        config = props.config
        self.function = python_function(
            self,
            "Handler",
            spec=FunctionSpec(
                handler=QUERY_HANDLER,
                description="Embeds a query image and returns its nearest neighbours",
                memory_mb=config.query_memory_mb,
                timeout=Duration.seconds(config.query_timeout_s),
                environment=replace(
                    props.settings,
                    opensearch_timeout_s=config.query_index_timeout_s,
                    opensearch_retries=QUERY_INDEX_RETRIES,
                ).to_env(),
            ),
            code=props.code,
            config=config,
            network=props.network,
        )
        live = lambda_.Alias(
            self,
            "Live",
            alias_name="live",
            version=self.function.current_version,
            provisioned_concurrent_executions=config.query_provisioned_concurrency or None,
        )
        props.store.grant_read(
            self.function, why="presigned GET links and searches by key may name any image"
        )
        props.store.grant_query_uploads(self.function, upload_prefix=props.settings.query_upload_prefix)
        self.api = self._rest_api(config)
        self._add_routes(config, apigw.LambdaIntegration(live))
        self._add_error_responses(config)
        self.api_key = self._add_usage_plan(config) if config.api_auth == "api_key" else None

    def _rest_api(self, config: DeploymentConfig) -> apigw.RestApi:
        access_logs = log_group(self, "AccessLogs", config=config)
        api = apigw.RestApi(
            self,
            "Api",
            # API Gateway's metrics and alarms are keyed by this name: one per stack, never a shared "Api"
            rest_api_name=f"{Stack.of(self).stack_name}-query",
            description="Image similarity search",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=list(BINARY_MEDIA_TYPES),
            cloud_watch_role=True,  # execution logging needs the account's API Gateway logging role
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                throttling_rate_limit=config.throttle_rate,
                throttling_burst_limit=config.throttle_burst,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies are images: never copy them into logs
                metrics_enabled=False,  # per-method metrics are billed; the alarms read the free per-API ones
                tracing_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=[config.cors_origin],
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=list(CORS_HEADERS),
            ),
        )
        acknowledge(
            api,
            managed_policy_finding("service-role/AmazonAPIGatewayPushToCloudWatchLogs"),
            "AWS's managed policy for the account-wide role API Gateway uses to write execution logs",
        )
        acknowledge(
            api,
            "AwsSolutions-APIG3",
            "no WAF web ACL (from $6/month): every request is authenticated and throttled by stage and key",
        )
        return api

    def _add_routes(self, config: DeploymentConfig, integration: apigw.Integration) -> None:
        # Required parameters are checked at the edge. Body validation is switched on but acts only on
        # methods with a request model, and none has one: bodies are images or JSON of several shapes,
        # which the function validates and explains (a JSON error with a code and a message).
        validator = apigw.RequestValidator(
            self, "Validator", rest_api=self.api, validate_request_parameters=True, validate_request_body=True
        )
        iam_auth = config.api_auth == "iam"
        for method, path, required in ROUTES:
            self.api.root.resource_for_path(path).add_method(
                method,
                integration,
                api_key_required=not iam_auth,
                authorization_type=apigw.AuthorizationType.IAM if iam_auth else apigw.AuthorizationType.NONE,
                request_validator=validator,
                request_parameters=dict.fromkeys(required, True),
            )
        if not iam_auth:
            acknowledge(
                self.api,
                "AwsSolutions-APIG4",
                "api_auth=api_key: every method requires an API key bound to a throttled usage plan "
                "(-c api_auth=iam switches to SigV4)",
            )
        acknowledge(
            self.api,
            "AwsSolutions-COG4",
            "callers are programs holding an API key or IAM credentials; there is no user pool to check",
        )

    def _add_error_responses(self, config: DeploymentConfig) -> None:
        """Errors API Gateway answers itself (bad parameters, missing key, throttling) in the API's shape.

        Issue 6's contract is ``{"error": {"code": ..., "message": ...}}`` for every error; without
        these, API Gateway would answer ``{"message": ...}`` before the function runs.
        """
        headers = {"Access-Control-Allow-Origin": f"'{config.cors_origin}'"}
        code = '"code": "$context.error.responseType"'
        quoted_message = '"message": $context.error.messageString'  # API Gateway quotes this one itself
        bodies = {
            apigw.ResponseType.BAD_REQUEST_PARAMETERS: '"message": "$context.error.validationErrorString"',
            apigw.ResponseType.DEFAULT_4_XX: quoted_message,
            apigw.ResponseType.DEFAULT_5_XX: quoted_message,
        }
        for response_type, message in bodies.items():
            self.api.add_gateway_response(
                response_type.response_type,
                type=response_type,
                response_headers=headers,
                templates={"application/json": f'{{"error": {{{code}, {message}}}}}'},
            )

    def _add_usage_plan(self, config: DeploymentConfig) -> apigw.IApiKey:
        key = self.api.add_api_key("Key", description="Default key of the image search API")
        plan = self.api.add_usage_plan(
            "UsagePlan",
            description="Throttles each API key",
            throttle=apigw.ThrottleSettings(
                rate_limit=config.throttle_rate, burst_limit=config.throttle_burst
            ),
        )
        plan.add_api_key(key)
        plan.add_api_stage(stage=self.api.deployment_stage)
        return key
