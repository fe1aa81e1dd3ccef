"""Does the CDK app synthesise offline, pass cdk-nag and cfn-lint, with no AWS account and no Docker?"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from infra.governance import apply_governance

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]


def _offline_env() -> dict[str, str]:
    """The CDK CLI with no credentials, no version check and the venv's python for `python3 app.py`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        CDK_DISABLE_VERSION_CHECK="1",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    )
    return env


@pytest.fixture(scope="session")
def synthesised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cdk.out")
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(out)],
        cwd=ROOT,
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_cdk_cli_synthesises_the_app_offline(synthesised: Path) -> None:
    template = json.loads((synthesised / "ImageSearch.template.json").read_text())
    assert template["Resources"], "the stack synthesised no resources"


def test_synthesised_template_has_no_cfn_lint_errors(synthesised: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "parseable", str(synthesised / "ImageSearch.template.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert errors == [], result.stdout


def test_cdk_nag_gate_fails_synth_on_an_unacknowledged_finding(tmp_path: Path) -> None:
    """The gate is live: a queue without a DLQ or TLS policy must stop synthesis."""
    app = cdk.App(outdir=str(tmp_path))
    sqs.Queue(cdk.Stack(app, "Probe"), "Queue")
    apply_governance(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    [nag] = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert {v["ruleName"] for v in nag["violations"]} >= {"AwsSolutions-SQS3", "AwsSolutions-SQS4"}
