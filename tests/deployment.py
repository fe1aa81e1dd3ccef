"""The synthesized deployment as its functions and custom resources see it, for tests that run them here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from simsearch.settings import Settings
from tests.iam.template import ResolvedTemplate


def cloudformation_properties(value: Any) -> Any:
    """Custom resource properties as CloudFormation hands them over: every scalar becomes a string."""
    if isinstance(value, Mapping):
        return {key: cloudformation_properties(item) for key, item in value.items() if key != "ServiceToken"}
    if isinstance(value, list):
        return [cloudformation_properties(item) for item in value]
    return str(value).lower() if isinstance(value, bool) else str(value)


def function_settings(template: ResolvedTemplate, handler: str, **overrides: Any) -> Settings:
    """The settings the template gives the function of ``handler``, with ``overrides`` for this machine."""
    [function] = [
        f
        for f in template.of_type("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == handler
    ]
    return replace(Settings.from_env(function["Properties"]["Environment"]["Variables"]), **overrides)
