"""Checks applied to the whole app at synth time: cdk-nag's AwsSolutions pack.

Every acknowledgement sits on the construct that causes it, with its reason; none is global.
"""

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks


def apply_governance(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
