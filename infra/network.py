"""Optional VPC placement (``-c vpc=true``): the domain and the functions in isolated subnets."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config import DeploymentConfig
from infra.log_groups import log_group


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
