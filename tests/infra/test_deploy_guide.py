"""Does the deployment guide say what the synthesized template does? Its tables are checked, not trusted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from infra.query_api import STAGE
from tests.iam.access_table import Row, access_rows
from tests.iam.template import ResolvedTemplate
from tests.infra.conftest import ROOT, Synthesis

pytestmark = pytest.mark.infra

GUIDE = ROOT / "docs" / "deploy.md"
README = ROOT / "README.md"

# The teardown table's rows, by the start of their first cell, and the resource types each stands for.
TEARDOWN_ROWS = {
    "OpenSearch domain": {"AWS::OpenSearchService::Domain"},
    "images bucket": {"AWS::S3::Bucket"},
    "log groups": {"AWS::Logs::LogGroup"},
    "KMS key": {"AWS::KMS::Key"},
    "API Gateway's account-wide CloudWatch Logs role": {"AWS::ApiGateway::Account", "AWS::IAM::Role"},
}


def table(markdown: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading``, header and rule excluded."""
    section = markdown.split(heading, 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    first = section.index(lines[0])
    rows = []
    for line in section[first:].splitlines():
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]


def test_teardown_table_lists_exactly_what_the_template_retains(synthesis: Synthesis) -> None:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Teardown", 1)[1]
    header = next(line for line in section.splitlines() if line.startswith("| resource"))
    profiles = [cell.strip() for cell in header.strip("|").split("|")]
    index = next(i for i, cell in enumerate(profiles) if cell.startswith(synthesis.profile))
    documented: set[str] = set()
    for row in table(text, "## Teardown"):
        kinds = next((kinds for label, kinds in TEARDOWN_ROWS.items() if row[0].startswith(label)), set())
        if row[index].startswith("kept"):
            documented |= kinds
    retained = {
        resource["Type"]
        for resource in synthesis.template_json["Resources"].values()
        if resource.get("DeletionPolicy") == "Retain"
    }
    assert retained == documented


def test_cost_table_counts_the_alarms_the_template_has(synthesis: Synthesis) -> None:
    rows = table(GUIDE.read_text(encoding="utf-8"), "## Monthly cost estimate")
    [alarms_row] = [row for row in rows if row[0].startswith("CloudWatch alarms")]
    cell = alarms_row[2 if synthesis.profile == "dev" else 3]
    documented = int(re.match(r"(\d+) ×", cell).group(1))  # type: ignore[union-attr]
    resources: dict[str, Any] = synthesis.template_json["Resources"]
    assert documented == sum(1 for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm")


@pytest.mark.parametrize("document", [README, GUIDE], ids=lambda path: Path(path).name)
def test_api_examples_use_the_deployed_stage_and_the_urls_trailing_slash(document: Path) -> None:
    """The ApiUrl output ends in ``/<stage>/``: ``$API_URL/search`` would ask for ``//search``."""
    text = document.read_text(encoding="utf-8")
    assert re.findall(r"\$\{?API(?:_URL)?\}?\"?/", text) == []
    stages = re.findall(r"(?:execute-api[^\s`]*amazonaws\.com|…)/([a-z0-9]+)/?", text)
    assert set(stages) <= {STAGE}


def test_the_access_table_lists_every_identity_and_grant_of_both_profiles(
    dev: Synthesis, prod: Synthesis
) -> None:
    """On a mismatch, the expected rows are printed: paste them and write each one's why."""
    synthesized = {
        row for synthesis in (dev, prod) for row in access_rows(ResolvedTemplate.of(synthesis.template_json))
    }
    documented = table(GUIDE.read_text(encoding="utf-8"), "## Who may do what")
    assert all(why for *_, why in documented), "every row says why"
    missing = sorted(synthesized - {Row(*cells[:3]) for cells in documented})
    extra = sorted({Row(*cells[:3]) for cells in documented} - synthesized)
    assert (missing, extra) == ([], []), "\n".join(row.markdown() for row in missing)
