"""Does the app synthesise offline for both profiles, clean for cdk-nag and cfn-lint, without AWS/Docker?"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from infra.governance import apply_governance
from tests.infra.conftest import STACK, Synthesis, cdk_synth

pytestmark = pytest.mark.infra


def test_cdk_cli_synthesises_each_profile_offline_with_no_unacknowledged_finding(
    synthesis: Synthesis,
) -> None:
    """cdk-nag runs as a validation plugin: an unacknowledged finding would have failed this synth."""
    assert synthesis.template_json["Resources"], "the stack synthesised no resources"
    report = json.loads((synthesis.out / "validation-report.json").read_text())
    assert [p for p in report["pluginReports"] if p["conclusion"] != "success"] == [], report
    print(f"\nsynth {synthesis.profile}: {synthesis.seconds:.1f} s")


def test_every_acknowledgement_gives_a_specific_reason(synthesis: Synthesis) -> None:
    reasons = acknowledgements(synthesis.out)
    assert reasons, "no acknowledgement was recorded"
    short = {rule: reason for rule, reason in reasons.items() if len(reason.split()) < 6}
    assert short == {}, "each acknowledgement must say why, in a sentence"


def test_synthesised_template_has_no_cfn_lint_errors(synthesis: Synthesis) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cfnlint",
            "--format",
            "parseable",
            str(synthesis.out / f"{STACK}.template.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert errors == [], result.stdout


def test_resnet50_without_a_checkpoint_stops_synth_with_instructions(tmp_path: Path) -> None:
    """Never a silent fallback to another model, and never a download during synth."""
    result = cdk_synth(tmp_path, "model=resnet50")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for instruction in ("-c weights=", "resnet50-0676ba61.pth", "-c model=mobilenet_v2"):
        assert instruction in output
    assert not (tmp_path / f"{STACK}.template.json").exists()


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


def acknowledgements(out: Path) -> dict[str, str]:
    """``{"<construct path> <rule>": reason}`` from the cloud assembly's metadata."""
    metadata: dict[str, list[dict[str, object]]] = json.loads((out / f"{STACK}.metadata.json").read_text())
    found: dict[str, str] = {}
    for path, entries in metadata.items():
        for entry in entries:
            if entry.get("type") == "aws:cdk:acknowledged-rules":
                data: dict[str, str] = entry["data"]  # type: ignore[assignment]
                found.update(
                    {f"{path} {rule.removeprefix('Annotation::')}": reason for rule, reason in data.items()}
                )
    return found
