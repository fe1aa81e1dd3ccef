"""Checks applied to the whole app at synth time: cdk-nag's AwsSolutions pack.

Every acknowledgement sits on the construct that causes it, with its reason; none is global. cdk-nag 3
matches acknowledgements exactly, so a wildcard finding is acknowledged by its own id
(``AwsSolutions-IAM5[Resource::...]``), never by the bare rule.
"""

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def apply_governance(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Suppress ``rule`` on ``construct`` and everything below it, recording ``reason`` in the assembly."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
