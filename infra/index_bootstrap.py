"""The custom resources that prepare the domain: OpenSearch roles for the functions, then the index."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.artifacts import Artifacts
from infra.config import DeploymentConfig
from infra.functions import FunctionSpec, logical_id, managed_policy_finding, python_function
from infra.governance import acknowledge
from infra.log_groups import log_group
from infra.network import Network
from infra.packaging import BOOTSTRAP_HANDLER
from infra.search_domain import SearchDomain
from simsearch.index.naming import pointer_name
from simsearch.manifest import ModelManifest
from simsearch.settings import Settings

# What each function may do inside OpenSearch; the domain's resource policy already limits the paths.
# Action groups are the security plugin's predefined ones; bulk and msearch are cluster-level actions.
INDEX_READ_ACTIONS = ("indices:admin/get", "indices:admin/aliases/get", "indices:admin/mappings/get")
WRITER_ROLE = {
    "cluster_permissions": ["cluster_composite_ops"],
    # create_index and aliases: ingestion's cold start calls ensure() on the index and the failures log,
    # which try to create them (and accept "already exists"): the security check comes first.
    "allowed_actions": [
        "crud",
        "create_index",
        "indices:admin/aliases",
        "indices:monitor/stats",
        *INDEX_READ_ACTIONS,
    ],
}
READER_ROLE = {
    "cluster_permissions": ["cluster_composite_ops_ro"],
    "allowed_actions": ["read", "indices:monitor/stats", *INDEX_READ_ACTIONS],
}
OPERATOR_ROLE = {
    # The re-index control steps: read counts and samples, move the pointer aliases, delete an old index.
    "cluster_permissions": ["cluster_composite_ops_ro"],
    "allowed_actions": [
        "read",
        "indices:monitor/stats",
        "indices:admin/aliases",
        "indices:admin/delete",
        "indices:admin/refresh*",  # the request and its shard-level part, indices:admin/refresh[s]
        *INDEX_READ_ACTIONS,
    ],
}


@dataclass(frozen=True, kw_only=True)
class IndexBootstrapProps:
    config: DeploymentConfig
    settings: Settings
    manifest: ModelManifest
    code: lambda_.Code
    search: SearchDomain
    writers: tuple[iam.IRole, ...]
    readers: tuple[iam.IRole, ...]
    operators: tuple[iam.IRole, ...]
    artifacts: Artifacts  # the bootstrap copies the bundle's model to its models bucket
    state_machine: sfn.IStateMachine  # started to fill a new model's index
    network: Network | None


class IndexBootstrap(Construct):
    """Custom resources served by one function that runs as the domain's master user.

    ``AccessRoles`` maps the functions' roles to least-privilege OpenSearch roles (writer, reader,
    operator); ``AuditLog`` (when the profile keeps audit logs) turns on the security plugin's audit
    logging, which the domain then publishes to CloudWatch Logs; ``VectorIndex`` copies the bundle's
    model to the models bucket, creates ``<prefix>-<model id>-v1`` with
    ``simsearch.index.mapping.index_body`` and attaches it to the pointers; on a model change it starts
    the re-index state machine. All are idempotent, so an update re-applies them; a delete leaves every
    index alone (a model change replaces the resource, and the old index serves until the switch).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: IndexBootstrapProps) -> None:
        super().__init__(scope, construct_id)
        settings, config = props.settings, props.config
        function = python_function(
            self,
            "Handler",
            spec=FunctionSpec(
                handler=BOOTSTRAP_HANDLER,
                description="Creates the OpenSearch roles, role mappings and k-NN index (CloudFormation)",
                memory_mb=512,
                timeout=Duration.minutes(10),  # waits out the access policy reaching every node
                environment=settings.to_env(),
                tracing=False,
                role=props.search.admin_role,
            ),
            code=props.code,
            config=config,
            network=props.network,
        )
        props.artifacts.grant_publish_models(props.search.admin_role)
        props.state_machine.grant_start_execution(props.search.admin_role)
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=function,
            log_group=log_group(self, "ProviderLogs", config=config),
        )
        self._acknowledge_provider(provider, function)
        common = {"Endpoint": props.search.endpoint_url}
        pattern = f"{settings.index_prefix}-*"
        access = CustomResource(
            self,
            "AccessRoles",
            service_token=provider.service_token,
            resource_type="Custom::SearchAccessRoles",
            properties={
                **common,
                "Roles": {
                    f"{settings.index_prefix}_writer": _role(WRITER_ROLE, pattern, props.writers),
                    f"{settings.index_prefix}_reader": _role(READER_ROLE, pattern, props.readers),
                    f"{settings.index_prefix}_operator": _role(OPERATOR_ROLE, pattern, props.operators),
                },
            },
        )
        self.serving = pointer_name(settings.index_prefix, "serving")
        index = CustomResource(
            self,
            "VectorIndex",
            service_token=provider.service_token,
            resource_type="Custom::VectorIndex",
            properties={
                **common,
                "Prefix": settings.index_prefix,
                "ModelId": props.manifest.model_id,
                "ModelUri": props.artifacts.model_uri(props.manifest.model_id),
                "StateMachineArn": props.state_machine.state_machine_arn,
                "Dimension": props.manifest.embedding_dim,
                "Engine": settings.engine,
                "SpaceType": settings.space_type,
                "M": settings.hnsw_m,
                "EfConstruction": settings.hnsw_ef_construction,
                "EfSearch": settings.hnsw_ef_search,
                "Replicas": config.index_replicas,
            },
        )
        index.node.add_dependency(access)  # a re-index it starts needs the operator and writer roles
        resources = [access, index]
        if config.audit_logs:
            resources.append(
                CustomResource(
                    self,
                    "AuditLog",
                    service_token=provider.service_token,
                    resource_type="Custom::SearchAuditLog",
                    properties=common,
                )
            )
        for resource in resources:
            resource.node.add_dependency(props.search.access_policy)  # run once the policy admits the roles

    @staticmethod
    def _acknowledge_provider(provider: cr.Provider, function: lambda_.IFunction) -> None:
        acknowledge(
            provider,
            "AwsSolutions-L1",
            "the CDK custom resource framework picks its own Node.js runtime; it runs only during deploys",
        )
        acknowledge(
            provider,
            managed_policy_finding("service-role/AWSLambdaBasicExecutionRole"),
            "the framework function writes only its own logs",
        )
        acknowledge(
            provider,
            f"AwsSolutions-IAM5[Resource::<{logical_id(function)}.Arn>:*]",
            "the framework may invoke any version of the bootstrap function, and only that function",
        )


def _role(
    template: dict[str, list[str]], pattern: str, principals: tuple[iam.IRole, ...]
) -> dict[str, object]:
    return {
        "cluster_permissions": template["cluster_permissions"],
        "index_permissions": [{"index_patterns": [pattern], "allowed_actions": template["allowed_actions"]}],
        "backend_roles": [role.role_arn for role in principals],
    }
