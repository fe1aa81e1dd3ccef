"""Ask ``@cloud-copilot/iam-simulate`` what AWS would decide for a batch of requests.

A maintained implementation of AWS's documented evaluation logic (explicit deny, identity and resource
policies in one account, role sessions, every condition operator), which also validates each action
against the Service Authorization Reference and each resource ARN against the action's resource
types: a misspelt action is an error, not a silent deny. moto's ``IAMPolicy`` was the other candidate;
it ignores condition operators other than ``StringEquals`` and treats a missing condition key as a
match, so it would approve a statement AWS refuses. The package is AGPL-licensed and used here as a
test tool only (npm devDependency, never bundled or shipped).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.iam.template import ACCOUNT

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("simulate.mjs")
Policy = Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Request:
    """One call to AWS: who (a role session or a service), what, on which ARN, with which context."""

    principal: str
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)
    identity_policies: Mapping[str, Policy] = field(default_factory=dict)  # name -> document
    resource_policy: Policy | None = None

    def simulation(self) -> dict[str, Any]:
        simulation: dict[str, Any] = {
            "identityPolicies": [{"name": n, "policy": p} for n, p in self.identity_policies.items()],
            "serviceControlPolicies": [],
            "resourceControlPolicies": [],
            "request": {
                "action": self.action,
                "principal": self.principal,
                "resource": {"resource": self.resource, "accountId": ACCOUNT},
                "contextVariables": dict(self.context),
            },
        }
        if self.resource_policy is not None:
            simulation["resourcePolicy"] = self.resource_policy
        return simulation


@dataclass(frozen=True, kw_only=True)
class Statement:
    """A statement that decided a request: its policy, and its Sid or what it grants."""

    policy: str
    sid: str | None = None
    action: Any = None
    resource: Any = None

    def __str__(self) -> str:
        if self.sid:
            return f"{self.policy}:{self.sid}"
        return f"{self.policy}: {self.action} on {self.resource}"


@dataclass(frozen=True, kw_only=True)
class Decision:
    """AWS's answer (``Allowed``, ``ImplicitlyDenied``, ``ExplicitlyDenied``, or ``Error``) and why."""

    request: Request
    decision: str
    identity_allows: tuple[Statement, ...] = ()
    resource_allows: tuple[Statement, ...] = ()
    denies: tuple[Statement, ...] = ()
    errors: Any = None

    @property
    def allowed(self) -> bool:
        return self.decision == "Allowed"

    @property
    def allowed_by(self) -> str:
        return "; ".join(str(s) for s in (*self.identity_allows, *self.resource_allows))

    def __str__(self) -> str:
        request = self.request
        why = f"errors {self.errors}" if self.errors else f"allowed by {self.allowed_by or 'nothing'}"
        if self.denies:
            why += f"; denied by {'; '.join(str(s) for s in self.denies)}"
        return f"{request.action} {request.resource} by {request.principal}: {self.decision} ({why})"


def simulate(requests: Sequence[Request]) -> list[Decision]:
    """One decision per request, in order (one Node process for the whole batch)."""
    if not requests:
        return []
    result = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps([request.simulation() for request in requests]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the IAM simulator failed (`npm ci` installs it): {result.stderr[-2000:]}")
    return [
        Decision(
            request=request,
            decision=answer["decision"],
            identity_allows=tuple(Statement(**s) for s in answer.get("identityAllows", ())),
            resource_allows=tuple(Statement(**s) for s in answer.get("resourceAllows", ())),
            denies=tuple(Statement(**s) for s in answer.get("denies", ())),
            errors=answer.get("errors"),
        )
        for request, answer in zip(requests, json.loads(result.stdout), strict=True)
    ]
