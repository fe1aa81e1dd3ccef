"""``make preflight`` (also ``imgsearch preflight``, ``python -m infra.preflight``): fail before deploying.

Builds the deployment from the context ``cdk deploy`` would see and checks the AWS account it would go
to, with the caller's credentials (boto3's default chain, or ``--profile``/``--region``): Lambda
concurrency, CDK bootstrap, OpenSearch's service-linked role (``vpc=true``) and instance types. It
prints one row per check with the fix for each failure, or JSON with ``--json``.

    make preflight ARGS="-c profile=prod --region eu-west-1"
    imgsearch preflight -c profile=prod -c vpc=true --profile deployer --json

Exit status: 0 every check passed, 1 a check failed, 2 the context or the options are invalid. The
module imports nothing heavy: the checks (aws_cdk through infra.config, boto3) load when one runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simsearch.errors import ConfigError

if TYPE_CHECKING:
    from infra.account_checks import CheckResult

PROJECT = Path(__file__).resolve().parents[1]  # cdk.json's folder, wherever the command runs from
COLUMN = 48  # characters of "found" and "what to do" per line of the table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Preflight's options, for ``python -m infra.preflight`` and the ``imgsearch preflight`` subcommand."""
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CDK context, as given to `cdk deploy -c` (repeat it); cdk.json's context applies too",
    )
    parser.add_argument("--region", help="the region to deploy to (default: AWS_REGION or the AWS config)")
    parser.add_argument("--profile", help="a named profile of the AWS config (default: the default chain)")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import ProfileNotFound

    from infra.account_checks import Target, run_checks
    from infra.config import DeploymentConfig

    try:
        context = deploy_context(args.context)
        config = DeploymentConfig.from_context(context, quota_measured=True)
        session = boto3.Session(profile_name=args.profile, region_name=args.region)
    except (ConfigError, ProfileNotFound) as error:
        print(f"preflight: {error}", file=sys.stderr)
        return 2
    return report(run_checks(Target.of(config, context, client=session.client)), as_json=args.json)


def deploy_context(assignments: Sequence[str]) -> dict[str, Any]:
    """The context ``cdk deploy -c ...`` sees, ranked as the CDK CLI ranks it: ``-c`` over cdk.json's
    ``context`` over cdk.context.json (the user's ~/.cdk.json is not read).

    Raises:
        ConfigError: a ``-c`` without ``=``, or a context file that is not JSON.
    """
    context: dict[str, Any] = {}
    context.update(_json_file(PROJECT / "cdk.context.json"))
    context.update(_json_file(PROJECT / "cdk.json").get("context", {}))
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals:
            raise ConfigError(f"-c {assignment!r} is not KEY=VALUE")
        context[key] = value
    return context


def _json_file(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise ConfigError(f"{path} is not JSON: {error}") from error
    return loaded if isinstance(loaded, dict) else {}


def report(results: Sequence[CheckResult], *, as_json: bool) -> int:
    """Print the results (a table, or JSON) and return the exit status: 0 if every check passed, else 1."""
    passed = all(result.passed for result in results)
    if as_json:
        print(json.dumps({"passed": passed, "checks": [r.to_json() for r in results]}, indent=2))
    else:
        print(table(results))
        count = sum(result.passed for result in results)
        print(
            f"\n{count} of {len(results)} checks passed"
            + ("" if passed else ": fix the failures, then run again")
        )
    return 0 if passed else 1


def table(results: Sequence[CheckResult]) -> str:
    """Aligned columns check | result | found | what to do; long cells wrap within their column."""
    width = max(len("check"), *(len(result.name) for result in results))
    lines = [_line(("check", "result", "found", "what to do"), width), "-" * (width + 2 * COLUMN + 14)]
    for result in results:
        found, fix = _wrap(result.finding.found), _wrap(result.finding.fix or "-")
        first = (result.name, "pass" if result.passed else "FAIL")
        for index in range(max(len(found), len(fix))):
            cells = first if index == 0 else ("", "")
            lines.append(_line((*cells, _at(found, index), _at(fix, index)), width))
    return "\n".join(lines)


def _line(cells: tuple[str, str, str, str], width: int) -> str:
    name, result, found, fix = cells
    return f"{name:<{width}}  {result:<6}  {found:<{COLUMN}}  {fix}".rstrip()


def _wrap(text: str) -> list[str]:
    # commands and `-c key=value` pairs stay whole, so they can be copied from the table
    return textwrap.wrap(text, COLUMN, break_long_words=False, break_on_hyphens=False) or [""]


def _at(lines: list[str], index: int) -> str:
    return lines[index] if index < len(lines) else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.preflight", description="Check an AWS account before `cdk deploy`."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
