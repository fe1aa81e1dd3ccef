"""Every function of the app: Python 3.12 on x86_64, the shared code bundle, its own log group."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnElement, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct, IConstruct

from infra.config import DeploymentConfig
from infra.governance import acknowledge
from infra.log_groups import log_group
from infra.network import Network

RUNTIME = lambda_.Runtime.PYTHON_3_12  # the bundle's wheels are cp312 (infra/packaging.py)
ARCHITECTURE = lambda_.Architecture.X86_64  # onnxruntime's arm64 wheel crashes on Lambda (onnxruntime#10038)


@dataclass(frozen=True, kw_only=True)
class FunctionSpec:
    handler: str
    description: str
    memory_mb: int
    timeout: Duration
    environment: dict[str, str]
    tracing: bool = True
    role: iam.IRole | None = None  # default: a new role with AWS's basic execution policy
    reserved_concurrency: int = 0  # 0: draw from the account's unreserved pool


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    spec: FunctionSpec,
    code: lambda_.Code,
    config: DeploymentConfig,
    network: Network | None,
) -> lambda_.Function:
    """A function from ``spec``, in the VPC when there is one, with the acknowledgements every one needs."""
    function = lambda_.Function(
        scope,
        construct_id,
        code=code,
        handler=spec.handler,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        description=spec.description,
        memory_size=spec.memory_mb,
        timeout=spec.timeout,
        environment=spec.environment,
        role=spec.role,
        reserved_concurrent_executions=spec.reserved_concurrency or None,
        log_group=log_group(scope, f"{construct_id}Logs", config=config),
        tracing=lambda_.Tracing.ACTIVE if spec.tracing else lambda_.Tracing.DISABLED,
        vpc=network.vpc if network else None,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED) if network else None,
        security_groups=[network.functions] if network else None,
    )
    acknowledge(function, "AwsSolutions-L1", "Python 3.12 matches the cp312 wheels bundled and smoke-tested")
    if spec.role is None:
        acknowledge_basic_execution_role(function, vpc=network is not None)
    if spec.tracing:
        acknowledge(
            function,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions",
        )
    return function


def acknowledge_basic_execution_role(scope: IConstruct, *, vpc: bool) -> None:
    """The AWS managed policies a Lambda role gets: logs, and ENI management when the function is in a VPC."""
    acknowledge(
        scope,
        managed_policy_finding("service-role/AWSLambdaBasicExecutionRole"),
        "AWS's minimal managed policy for a function to write its CloudWatch logs",
    )
    if vpc:
        acknowledge(
            scope,
            managed_policy_finding("service-role/AWSLambdaVPCAccessExecutionRole"),
            "AWS's managed policy for a function to attach its network interfaces in the VPC",
        )


def managed_policy_finding(name: str) -> str:
    """cdk-nag's finding id for a role that uses the AWS managed policy ``name``."""
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"


def role_of(function: lambda_.Function) -> iam.IRole:
    """The execution role of ``function`` (always present for a ``Function``; the type says optional)."""
    if function.role is None:
        raise ValueError(f"{function.node.path} has no execution role")
    return function.role


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of ``construct``'s resource, as cdk-nag spells it in a finding."""
    element = construct.node.default_child
    if not isinstance(element, CfnElement):
        raise ValueError(f"{construct.node.path} has no CloudFormation resource of its own")
    return Stack.of(construct).get_logical_id(element)
