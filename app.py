#!/usr/bin/env python3
"""The CDK app: one ImageSearchStack and the governance checks. Nothing else."""

import os
import sys

import aws_cdk as cdk

from infra.config import STACK_NAME
from infra.governance import apply_governance
from infra.stack import ImageSearchStack
from simsearch.errors import ConfigError

app = cdk.App()
# The account and region the CLI resolved from the caller's credentials (none offline): a stack bound to
# them learns the region's real availability zones, which a VPC across three zones needs.
env = cdk.Environment(
    account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
)
try:
    ImageSearchStack(app, STACK_NAME, env=env)
except ConfigError as error:  # a setting to fix (context, model): say which, without a traceback
    sys.exit(f"cdk synth stopped: {error}")
apply_governance(app)
app.synth()
