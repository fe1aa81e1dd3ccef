"""Does the app synthesise offline for both profiles, clean for cdk-nag and cfn-lint, without AWS/Docker?"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from infra.governance import apply_governance
from model.architectures import RESNET50
from model.releases import TEST_PIN_VARIABLE
from model.synthetic import synthetic_state_dict
from tests.checkpoint_factories import checkpoint_bytes
from tests.infra.conftest import STACK, Synthesis, cdk_synth

pytestmark = pytest.mark.infra
UNREACHABLE = "http://127.0.0.1:9/models"  # the discard port: refused at once, the internet never asked


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


def test_offline_without_a_cached_checkpoint_synth_stops_with_the_ways_round(tmp_path: Path) -> None:
    """Never a silent fallback to another model: the message names the URL, the cache and the routes."""
    v1 = RESNET50.releases[0]
    url = f"{UNREACHABLE}/{v1.file_name}"
    pin = {"file_name": v1.file_name, "sha256": v1.sha256, "size": v1.size, "url": url}
    env = {TEST_PIN_VARIABLE: json.dumps(pin), "TORCH_HOME": str(tmp_path / "torch")}

    result = cdk_synth(tmp_path / "out", env={**env, "XDG_CACHE_HOME": str(tmp_path / "xdg")})

    assert result.returncode != 0
    stopped = next(line for line in result.stderr.splitlines() if line.startswith("cdk synth stopped:"))
    for instruction in (
        f"could not download {url}",
        str(tmp_path / "xdg/simsearch/checkpoints" / v1.file_name),
        f"-c weights=/path/to/{v1.file_name}",
        "-c model=mobilenet_v2",
    ):
        assert instruction in stopped, stopped
    assert not (tmp_path / "out" / f"{STACK}.template.json").exists()


@pytest.mark.slow
def test_with_a_checkpoint_in_torchs_cache_plain_cdk_synth_bundles_resnet50(tmp_path: Path) -> None:
    """``npx cdk synth`` with no context at all, as a new user runs it once torchvision has the file.

    The real checkpoint cannot be downloaded here, so a synthetic one of the same layout and size stands in
    under the real file name, its pins passed the only way that reaches the converter's subprocess.
    The conversion lands in build/models/resnet50, as a real synth's would; a later synth with the
    real checkpoint rebuilds it, since the manifest records the weights' sha256.
    """
    checkpoint = checkpoint_bytes(synthetic_state_dict(RESNET50.layout()))
    v1 = RESNET50.releases[0]
    (tmp_path / "torch/hub/checkpoints").mkdir(parents=True)
    (tmp_path / "torch/hub/checkpoints" / v1.file_name).write_bytes(checkpoint)
    sha256 = hashlib.sha256(checkpoint).hexdigest()
    pin = {"file_name": v1.file_name, "sha256": sha256, "size": len(checkpoint), "url": UNREACHABLE}
    env = {TEST_PIN_VARIABLE: json.dumps(pin), "TORCH_HOME": str(tmp_path / "torch")}

    result = cdk_synth(tmp_path / "out", env={**env, "XDG_CACHE_HOME": str(tmp_path / "xdg")})

    assert result.returncode == 0, result.stderr[-3000:]
    [manifest] = [
        json.loads(p.read_text()) for p in (tmp_path / "out").glob("asset.*/embedding_model/manifest.json")
    ]
    assert (manifest["arch"], manifest["weights"], manifest["weights_sha256"]) == (
        "resnet50",
        "IMAGENET1K_V1",
        sha256,
    )
    printed = re.search(r"Lambda bundle: ([\d.]+) MiB unzipped of Lambda's 250 MiB", result.stderr)
    assert printed, result.stderr[-3000:]
    assert float(printed.group(1)) <= 250
    assert not (tmp_path / "xdg").exists()  # nothing downloaded: torch's copy was used
    print(f"\n{printed.group(0)}")


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
