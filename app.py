#!/usr/bin/env python3
"""The CDK app: one ImageSearchStack and the governance checks. Nothing else."""

import sys

import aws_cdk as cdk

from infra.config import STACK_NAME
from infra.governance import apply_governance
from infra.stack import ImageSearchStack
from simsearch.errors import ConfigError

app = cdk.App()
try:
    ImageSearchStack(app, STACK_NAME)
except ConfigError as error:  # a setting to fix (context, model): say which, without a traceback
    sys.exit(f"cdk synth stopped: {error}")
apply_governance(app)
app.synth()
