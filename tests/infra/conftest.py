"""Synthesis fixtures: the CDK CLI synthesises each profile once per session; variants synthesise in-process.

Synth is the slow part of this folder (~20-30 s per profile on two cores), so every assertion on a
profile reads the one template of that session's CLI run, and each in-process variant (VPC, IAM auth)
is synthesised once too, with asset staging off (the bundle is already cached).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.governance import apply_governance
from infra.stack import ImageSearchStack

ROOT = Path(__file__).resolve().parents[2]
STACK = "ImageSearch"
VARIANT_CORS_ORIGIN = "https://app.example.org"
SYNTH_MODEL = "mobilenet_v2"  # offline CI has its real weights (make model); ResNet50's would be downloaded
CDK_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
PROFILE_CONTEXT: dict[str, dict[str, str]] = {  # what a user passes besides the profile (docs/deploy.md)
    "dev": {},
    "prod": {"account_concurrency": "1000"},  # prod reserves concurrency: it states the default quota
}


@dataclass(frozen=True)
class Synthesis:
    """One CLI synthesis of the app: its cloud assembly, the exit status and what it printed."""

    profile: str
    out: Path
    returncode: int
    output: str
    seconds: float

    @property
    def template_json(self) -> dict[str, Any]:
        return json.loads((self.out / f"{STACK}.template.json").read_text())  # type: ignore[no-any-return]

    @property
    def template(self) -> Template:
        return Template.from_json(self.template_json)


def offline_env() -> dict[str, str]:
    """The CDK CLI with no AWS credentials or region, no version check and no Node EOL banner."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_DEFAULT_"))}
    env.update(CDK_DISABLE_VERSION_CHECK="1", JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    return env


def cdk_synth(
    out: Path, *context: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``npx cdk synth -c <context>...`` offline, with ``env`` added to its environment."""
    command = ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(out)]
    for item in context:
        command += ["-c", item]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**offline_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="session")
def cli_synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Synthesis]:
    """``cli_synth(profile)``: ``npx cdk synth -c profile=<profile>``, run at most once per profile."""
    done: dict[str, Synthesis] = {}

    def synth(profile: str) -> Synthesis:
        if profile not in done:
            out = tmp_path_factory.mktemp(f"cdk.out-{profile}")
            started = time.perf_counter()
            extra = [f"{key}={value}" for key, value in PROFILE_CONTEXT[profile].items()]
            result = cdk_synth(out, f"profile={profile}", f"model={SYNTH_MODEL}", *extra)
            done[profile] = Synthesis(
                profile, out, result.returncode, result.stdout + result.stderr, time.perf_counter() - started
            )
        return done[profile]

    return synth


@pytest.fixture(scope="session")
def dev(cli_synth: Callable[[str], Synthesis]) -> Synthesis:
    return _succeeded(cli_synth("dev"))


@pytest.fixture(scope="session")
def prod(cli_synth: Callable[[str], Synthesis]) -> Synthesis:
    return _succeeded(cli_synth("prod"))


@pytest.fixture(scope="session", params=["dev", "prod"])
def synthesis(request: pytest.FixtureRequest, cli_synth: Callable[[str], Synthesis]) -> Synthesis:
    return _succeeded(cli_synth(request.param))


def _succeeded(synthesis: Synthesis) -> Synthesis:
    assert synthesis.returncode == 0, synthesis.output
    return synthesis


def in_process_stack(
    outdir: Path, *, env: cdk.Environment | None = None, **context: object
) -> ImageSearchStack:
    """The stack in this process, with cdk.json's context plus ``context``; the bundle is not copied."""
    app = cdk.App(
        outdir=str(outdir),
        context={**CDK_CONTEXT, "model": SYNTH_MODEL, "aws:cdk:disable-asset-staging": True, **context},
    )
    stack = ImageSearchStack(app, STACK, env=env)
    apply_governance(app)
    return stack


@pytest.fixture(scope="session")
def vpc_iam_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The prod profile in a VPC, with IAM-authorised methods and one CORS origin; cdk-nag runs here too."""
    stack = in_process_stack(
        tmp_path_factory.mktemp("vpc-iam"),
        **PROFILE_CONTEXT["prod"],
        profile="prod",
        vpc="true",
        api_auth="iam",
        cors_origin=VARIANT_CORS_ORIGIN,
    )
    return Template.from_stack(stack)
