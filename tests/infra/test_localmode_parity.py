"""Local mode configures its bucket and queue as the CDK app does: checked against the synthesized template.

``localmode.cloud`` cannot import the CDK constructs (local mode must start without jsii), so the
equivalence of the two configurations is asserted here instead of shared.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.ingestion import MAX_RECEIVES
from localmode.cloud import MAX_RECEIVES as LOCAL_MAX_RECEIVES
from localmode.cloud import notification_configuration
from tests.infra.conftest import Synthesis

pytestmark = pytest.mark.infra


def _of_type(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def test_the_local_bucket_notifies_the_queue_of_the_same_events_in_the_same_shape(
    synthesis: Synthesis,
) -> None:
    [notifications] = _of_type(synthesis.template_json, "Custom::S3BucketNotifications")
    deployed = notifications["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    local = notification_configuration("arn:aws:sqs:us-east-1:123456789012:uploads")["QueueConfigurations"]
    assert sorted((c["Events"], c.get("Filter")) for c in deployed) == sorted(
        (c["Events"], c.get("Filter")) for c in local
    )


def test_the_local_queue_gives_up_after_as_many_receives(synthesis: Synthesis) -> None:
    queues = _of_type(synthesis.template_json, "AWS::SQS::Queue")
    [redrive] = [q["Properties"]["RedrivePolicy"] for q in queues if "RedrivePolicy" in q["Properties"]]
    assert redrive["maxReceiveCount"] == MAX_RECEIVES == LOCAL_MAX_RECEIVES
