"""Does preflight ask for the CDK bootstrap version that this CDK release's assembly requires?"""

from __future__ import annotations

import json

import pytest

from infra.account_checks import REQUIRED_BOOTSTRAP_VERSION
from tests.infra.conftest import STACK, Synthesis

pytestmark = pytest.mark.infra


def test_preflight_requires_the_bootstrap_version_the_synthesised_assembly_requires(dev: Synthesis) -> None:
    """The template's CheckBootstrapVersion rule and the manifest both name it; an upgrade may raise it."""
    rule = dev.template_json["Rules"]["CheckBootstrapVersion"]["Assertions"][0]
    rejected = rule["Assert"]["Fn::Not"][0]["Fn::Contains"][0]
    assert rejected == [str(version) for version in range(1, REQUIRED_BOOTSTRAP_VERSION)]
    manifest = json.loads((dev.out / "manifest.json").read_text())
    stack = manifest["artifacts"][STACK]["properties"]
    assert stack["requiresBootstrapStackVersion"] == REQUIRED_BOOTSTRAP_VERSION
