"""The backfill / re-index state machine as synthesised: a valid definition, the configured map, one role.

The definition of each profile is resolved (tests/iam/template.py) and checked by ``asl-validator``
(the Amazon States Language schema and its path rules, npm); its states are read as Step Functions
reads them. What the state machine's role may do is evaluated by the IAM simulator in
tests/infra/test_deliveries.py; running the definition is tests/integration/test_reindex_state_machine.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.config import PROFILES
from infra.packaging import BACKFILL_HANDLER, REINDEX_HANDLER
from infra.reindex import INVENTORY_ID, INVENTORY_PREFIX, RETRIED_ERRORS
from tests.iam.template import ResolvedTemplate
from tests.infra.conftest import ROOT, Synthesis

pytestmark = pytest.mark.infra

VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"


def definition(synthesis: Synthesis) -> dict[str, Any]:
    template = ResolvedTemplate.of(synthesis.template_json)
    [machine] = template.of_type("AWS::StepFunctions::StateMachine").values()
    return json.loads(machine["Properties"]["DefinitionString"])  # type: ignore[no-any-return]


def function_arn(synthesis: Synthesis, handler: str) -> str:
    template = ResolvedTemplate.of(synthesis.template_json)
    [name] = [
        name
        for name, function in template.of_type("AWS::Lambda::Function").items()
        if function["Properties"].get("Handler") == handler
    ]
    return template.arn(name)


def bucket(synthesis: Synthesis, part: str) -> str:
    template = ResolvedTemplate.of(synthesis.template_json)
    [name] = [name for name in template.of_type("AWS::S3::Bucket") if part in name]
    return template.ref(name)


def test_the_definition_of_each_profile_is_valid_amazon_states_language(
    synthesis: Synthesis, tmp_path: Path
) -> None:
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition(synthesis)), encoding="utf-8")
    checked = subprocess.run(
        [str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_validator_refuses_a_broken_definition(synthesis: Synthesis, tmp_path: Path) -> None:
    """The check above can fail: a batch size that is not a number is refused."""
    broken = definition(synthesis)
    broken["States"]["Backfill"]["ItemBatcher"]["MaxItemsPerBatch"] = "twenty"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    checked = subprocess.run(
        [str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 1 and "MaxItemsPerBatch" in checked.stdout + checked.stderr


def test_the_map_lists_the_images_bucket_in_configured_batches_into_the_backfill_function(
    synthesis: Synthesis,
) -> None:
    config = PROFILES[synthesis.profile]
    backfill = definition(synthesis)["States"]["Backfill"]
    assert backfill["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert backfill["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:listObjectsV2",
        "Parameters": {"Bucket": bucket(synthesis, "StoreImages"), "Prefix.$": "$.prepared.prefix"},
    }
    assert backfill["ItemBatcher"] == {
        "MaxItemsPerBatch": config.backfill_batch_size,
        "BatchInput": {"target.$": "$.prepared.target", "keys": "plain"},
    }
    assert backfill["MaxConcurrency"] == config.backfill_max_concurrency
    assert backfill["ToleratedFailurePercentage"] == config.backfill_tolerated_failure_percent
    assert backfill["ResultWriter"]["Parameters"] == {
        "Bucket": bucket(synthesis, "Reports"),
        "Prefix": "backfills",
    }
    [task] = backfill["ItemProcessor"]["States"].values()
    assert task["Parameters"]["FunctionName"] == function_arn(synthesis, BACKFILL_HANDLER)
    assert any(set(RETRIED_ERRORS) <= set(retry["ErrorEquals"]) for retry in task["Retry"])


def test_every_other_task_asks_the_control_function(synthesis: Synthesis) -> None:
    states = definition(synthesis)["States"]
    control = function_arn(synthesis, REINDEX_HANDLER)
    tasks = {name: state for name, state in states.items() if state["Type"] == "Task"}
    assert {name: (state["Resource"], state["Parameters"]["action"]) for name, state in tasks.items()} == {
        name: (control, name.lower())
        for name in (
            "Prepare",
            "Gate",
            *(["Switch"] if PROFILES[synthesis.profile].reindex_auto_switch else []),
        )
    }


def test_a_reindex_ends_switched_in_dev_and_ready_to_switch_in_prod(synthesis: Synthesis) -> None:
    states = definition(synthesis)["States"]
    auto = PROFILES[synthesis.profile].reindex_auto_switch
    assert states["Passed"]["Default"] == ("Switch" if auto else "ReadyToSwitch")
    assert states["Passed"]["Choices"] == [
        {"Variable": "$.gate.passed", "BooleanEquals": False, "Next": "GateRefused"}
    ]
    assert states["Reindexing"]["Default"] == "Backfilled"  # a plain backfill never gates nor switches


def test_with_an_inventory_a_backfill_may_read_its_manifest_instead_of_listing(synthesis: Synthesis) -> None:
    config = PROFILES[synthesis.profile]
    states = definition(synthesis)["States"]
    template = ResolvedTemplate.of(synthesis.template_json)
    [images] = [b for name, b in template.of_type("AWS::S3::Bucket").items() if "StoreImages" in name]
    inventories = images["Properties"].get("InventoryConfigurations", [])
    if not config.inventory:
        assert inventories == [] and "BackfillFromInventory" not in states
        return
    assert inventories == [
        {
            "Id": INVENTORY_ID,
            "Enabled": True,
            "IncludedObjectVersions": "Current",
            "ScheduleFrequency": "Daily",
            "Destination": {
                "BucketArn": f"arn:aws:s3:::{bucket(synthesis, 'Reports')}",
                "BucketAccountId": "123456789012",
                "Format": "CSV",
                "Prefix": INVENTORY_PREFIX,
            },
        }
    ]
    assert states["Source"]["Choices"] == [
        {"Variable": "$.prepared.manifest", "StringEquals": "", "Next": "Backfill"}
    ]
    from_inventory = states["BackfillFromInventory"]
    assert from_inventory["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "MANIFEST"},
        "Parameters": {"Bucket": bucket(synthesis, "Reports"), "Key.$": "$.prepared.manifest"},
    }
    assert from_inventory["ItemBatcher"]["BatchInput"]["keys"] == "url-encoded"
