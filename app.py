#!/usr/bin/env python3
"""The CDK app: one ImageSearchStack and the governance checks. Nothing else."""

import aws_cdk as cdk

from infra.governance import apply_governance
from infra.stack import ImageSearchStack

app = cdk.App()
ImageSearchStack(app, "ImageSearch")
apply_governance(app)
app.synth()
