"""Log groups with the profile's retention and removal policy, so no log lives forever by accident."""

from __future__ import annotations

from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import RETENTION, DeploymentConfig


def log_group(scope: Construct, construct_id: str, *, config: DeploymentConfig) -> logs.LogGroup:
    """A log group kept ``config.log_retention_days`` and deleted with the stack only in a destroy profile."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=RETENTION[config.log_retention_days],
        removal_policy=config.removal_policy,
    )
