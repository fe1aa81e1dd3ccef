"""The OpenSearch Service domain that holds the k-NN index."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_opensearchservice as opensearch
from aws_cdk import custom_resources as cr
from constructs import Construct, IConstruct

from infra.config import DeploymentConfig
from infra.functions import acknowledge_basic_execution_role, logical_id
from infra.governance import acknowledge
from infra.log_groups import log_group
from infra.network import Network

# What each kind of function may send to the domain: (HTTP verbs, paths below the domain ARN), with
# `{p}` the app's index pattern. Exactly what the OpenSearch adapter sends (simsearch/index/opensearch.py):
# the integration suite records every request the deployed functions make and replays it against these
# grants (tests/integration/test_deployed_access.py). No policy here grants `es:*` or `es:ESHttp*`.
Access = tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
READER: Access = (
    (("GET",), ("{p}/*",)),  # a document by id
    (("POST",), ("{p}/_search", "{p}/_count")),  # opensearch-py sends searches and counts as POST
)
WRITER: Access = (
    (("GET", "POST", "PUT"), ("{p}", "{p}/*")),  # create the indexes, read aliases, mappings, documents
    (("POST",), ("_bulk",)),  # streaming_bulk posts to /_bulk; FGAC still limits each item to the pattern
)
OPERATOR: Access = (
    (("GET",), ("{p}", "{p}/*")),  # the pointers, each index's model (mapping), its documents
    (("POST",), ("{p}/_search", "{p}/_count", "{p}/_refresh")),  # the gate: counts (refreshed first), samples
    (("POST",), ("_aliases",)),  # a switch or rollback: the pointer aliases move in one request
    (("DELETE",), ("{p}",)),  # cleanup: the index that no longer serves
)
ACCESS_KINDS = (READER, WRITER, OPERATOR)
ADMIN_VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")  # the master user: roles, mappings, indexes


@dataclass(frozen=True, kw_only=True)
class SearchDomainProps:
    config: DeploymentConfig
    network: Network | None


class SearchDomain(Construct):
    """Encrypted at rest and between nodes, HTTPS-only with TLS 1.2+, fine-grained access control on.

    Two layers decide every request: the domain's resource policy admits only the roles passed to
    ``admit`` (each on the paths it needs), then fine-grained access control maps each role to an
    OpenSearch role. Its master user is ``admin_role``, which only the index bootstrap function assumes.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: SearchDomainProps) -> None:
        super().__init__(scope, construct_id)
        config = props.config
        self.admin_role = iam.Role(
            self,
            "AdminRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Fine-grained access control master user, assumed only by the index bootstrap",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaBasicExecutionRole")
            ],
        )
        if props.network:
            self.admin_role.add_managed_policy(
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaVPCAccessExecutionRole")
            )
        kinds = ["AppLogs", "SlowSearchLogs", "SlowIndexLogs"] + (["AuditLogs"] if config.audit_logs else [])
        log_groups = {kind: log_group(self, kind, config=config) for kind in kinds}
        logs_policy = self._let_domain_log(list(log_groups.values()))
        self.domain = opensearch.Domain(
            self,
            "Domain",
            version=opensearch.EngineVersion.open_search(config.engine_version),
            enable_version_upgrade=True,
            capacity=opensearch.CapacityConfig(
                data_node_instance_type=config.data_node_type,
                data_nodes=config.data_nodes,
                master_node_instance_type=config.master_node_type or None,
                master_nodes=config.master_nodes or None,
                multi_az_with_standby_enabled=False,
            ),
            ebs=opensearch.EbsOptions(volume_size=config.volume_gb, volume_type=ec2.EbsDeviceVolumeType.GP3),
            zone_awareness=opensearch.ZoneAwarenessConfig(
                enabled=config.availability_zones > 1,
                availability_zone_count=config.availability_zones if config.availability_zones > 1 else None,
            ),
            encryption_at_rest=opensearch.EncryptionAtRestOptions(enabled=True),
            node_to_node_encryption=True,
            enforce_https=True,
            tls_security_policy=opensearch.TLSSecurityPolicy.TLS_1_2_PFS,
            fine_grained_access_control=opensearch.AdvancedSecurityOptions(
                master_user_arn=self.admin_role.role_arn
            ),
            logging=opensearch.LoggingOptions(
                app_log_enabled=True,
                app_log_group=log_groups["AppLogs"],
                slow_search_log_enabled=True,
                slow_search_log_group=log_groups["SlowSearchLogs"],
                slow_index_log_enabled=True,
                slow_index_log_group=log_groups["SlowIndexLogs"],
                audit_log_enabled=config.audit_logs,  # the bootstrap turns the plugin's audit log on
                audit_log_group=log_groups.get("AuditLogs"),
            ),
            suppress_logs_resource_policy=True,  # _let_domain_log writes one with confused-deputy conditions
            vpc=props.network.vpc if props.network else None,
            vpc_subnets=props.network.domain_subnets(config.availability_zones) if props.network else None,
            removal_policy=config.removal_policy,
        )
        self.domain.node.add_dependency(logs_policy)  # the service checks it when logging is switched on
        self.endpoint_url = f"https://{self.domain.domain_endpoint}"
        self.domain.grant_read_write(self.admin_role)
        self.domain.add_access_policies(
            self._allow(self.admin_role, [f"{self.domain.domain_arn}/*"], _actions(ADMIN_VERBS))
        )
        acknowledge(
            self.admin_role,
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.domain)}.Arn>/*]",
            "the master user creates roles, role mappings, indexes and aliases: paths across the domain",
        )
        self._acknowledge(config, in_vpc=props.network is not None)
        acknowledge_basic_execution_role(self.admin_role, vpc=props.network is not None)
        self._acknowledge_cdk_helpers()

    def admit(self, grantee: iam.IRole, *, index_pattern: str, access: Access) -> None:
        """Let ``grantee`` send the requests of ``access`` (``READER``, ...) to the ``index_pattern`` indexes.

        The same statements go into the role's policy and the domain's resource policy, so the request
        is allowed whichever of the two AWS consults first and whatever either says of role sessions.
        """
        arn = self.domain.domain_arn
        for verbs, paths in access:
            resources = [f"{arn}/{path.format(p=index_pattern)}" for path in paths]
            iam.Grant.add_to_principal(grantee=grantee, actions=_actions(verbs), resource_arns=resources)
            self.domain.add_access_policies(self._allow(grantee, resources, _actions(verbs)))
        domain = f"<{logical_id(self.domain)}.Arn>"
        wildcards = {
            path.format(p=index_pattern) for kind in ACCESS_KINDS for _, paths in kind for path in paths
        }
        for path in sorted(p for p in wildcards if "*" in p):  # cdk-nag reports each wildcard resource
            acknowledge(
                grantee,
                f"AwsSolutions-IAM5[Resource::{domain}/{path}]",
                "index paths of this app's prefix only: its indexes and the aliases that point at them",
            )

    @property
    def access_policy(self) -> IConstruct:
        """The custom resource that sets the domain's resource policy (made by the first statement)."""
        return self.domain.node.find_child("AccessPolicy")

    def allow_connections_from(self, security_group: ec2.ISecurityGroup) -> None:
        """Open HTTPS on the domain's security group to the functions (VPC placement only)."""
        self.domain.connections.allow_default_port_from(security_group)

    @staticmethod
    def _allow(role: iam.IRole, resources: list[str], actions: list[str]) -> iam.PolicyStatement:
        # The resource policy has no grant_* method: its statements are the one place written by hand.
        return iam.PolicyStatement(
            principals=[iam.ArnPrincipal(role.role_arn)], actions=actions, resources=resources
        )

    def _let_domain_log(self, groups: list[logs.LogGroup]) -> logs.ResourcePolicy:
        """OpenSearch Service may write to these log groups on behalf of a domain of this account.

        CDK's own policy names no source, so any account's domain could write into them; AWS's advice
        for OpenSearch logs adds ``aws:SourceAccount`` and ``aws:SourceArn``. The domain's own ARN
        cannot appear here (the domain waits for this policy), so the source is this account's domains.
        """
        stack = Stack.of(self)
        domains = f"arn:{stack.partition}:es:{stack.region}:{stack.account}:domain/*"
        return logs.ResourcePolicy(
            self,
            "LogsPolicy",
            policy_statements=[
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal("es.amazonaws.com")],
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[group.log_group_arn for group in groups],
                    conditions={
                        "StringEquals": {"aws:SourceAccount": stack.account},
                        "ArnLike": {"aws:SourceArn": domains},
                    },
                )
            ],
        )

    def _acknowledge_cdk_helpers(self) -> None:
        """The domain's access policy is set by CDK's AwsCustomResource function."""
        helper = Stack.of(self).node.try_find_child(
            "AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", "")
        )
        if helper is not None:
            acknowledge_basic_execution_role(helper, vpc=False)

    def _acknowledge(self, config: DeploymentConfig, *, in_vpc: bool) -> None:
        if not in_vpc:
            acknowledge(
                self.domain,
                "AwsSolutions-OS1",
                "public endpoint by default (-c vpc=true places the domain in a VPC): the resource policy "
                "admits only this stack's roles, every request is SigV4-signed, and fine-grained access "
                "control maps each role to a least-privilege OpenSearch role",
            )
        acknowledge(
            self.domain,
            "AwsSolutions-OS3",
            "callers are Lambda functions with changing IP addresses, so an IP allow-list cannot name them; "
            "access is limited by IAM identity (resource policy + SigV4 + fine-grained access control)"
            + (" and, in the VPC, by a security group open to the functions only" if in_vpc else ""),
        )
        if config.master_nodes == 0:
            acknowledge(
                self.domain,
                "AwsSolutions-OS4",
                f"profile {config.profile} runs {config.data_nodes} data node(s) without dedicated masters "
                "to save cost; the prod profile has three",
            )
        if config.availability_zones == 1:
            acknowledge(
                self.domain,
                "AwsSolutions-OS7",
                f"profile {config.profile} runs in one availability zone to save cost; prod uses two",
            )


def _actions(verbs: tuple[str, ...]) -> list[str]:
    """``es:ESHttp<Verb>``: OpenSearch Service authorises each HTTP request by its method."""
    return [f"es:ESHttp{verb.capitalize()}" for verb in verbs]
