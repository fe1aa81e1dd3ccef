"""Optional VPC placement (``-c vpc=true``): the domain and the functions in isolated subnets."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack, Token
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config import DeploymentConfig
from infra.log_groups import log_group
from simsearch.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class NetworkProps:
    config: DeploymentConfig


class Network(Construct):
    """No route to the internet: S3 is reached through a gateway endpoint, OpenSearch inside the VPC.

    The functions need nothing else on the network: SQS is polled by the Lambda service, and logs and
    metrics (EMF) leave through the Lambda service too.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: NetworkProps) -> None:
        super().__init__(scope, construct_id)
        _check_zones(Stack.of(self), wanted=props.config.availability_zones)
        flow_logs = log_group(self, "FlowLogs", config=props.config)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=max(2, props.config.availability_zones),
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="Isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
            flow_logs={
                "Rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )
        self.functions = ec2.SecurityGroup(
            self, "Functions", vpc=self.vpc, description="Lambda functions that call the search domain"
        )

    def domain_subnets(self, count: int) -> list[ec2.SubnetSelection]:
        """One isolated subnet per availability zone the domain spans (OpenSearch wants exactly that many)."""
        return [ec2.SubnetSelection(subnets=self.vpc.isolated_subnets[:count])]


def _check_zones(stack: Stack, *, wanted: int) -> None:
    """Stop synth when the VPC cannot have one subnet per zone the domain spans.

    A stack without an account and region (synth without credentials) knows only two zones, CDK's
    placeholders; bound to them (app.py passes the CLI's), it knows the region's own.
    """
    known = len(stack.availability_zones)
    if wanted <= known:
        return
    if Token.is_unresolved(stack.account) or Token.is_unresolved(stack.region):
        raise ConfigError(
            f"vpc=true with availability_zones={wanted} needs the target account and region at synth "
            f"time: without them CDK knows only {known} zones. Run `npx cdk deploy` (or synth) with "
            "credentials for the target account, so the CLI passes them, or use -c availability_zones=2"
        )
    raise ConfigError(
        f"availability_zones={wanted}, but region {stack.region} offers {known} availability zones "
        f"to account {stack.account}: use -c availability_zones={known}"
    )
