"""The ``imgsearch`` command line: help everywhere, exit statuses, what it does with no stack running."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from localmode import cli, discovery, reindexing
from localmode.cloud import LocalCloud
from localmode.errors import CommandFailed
from simsearch.settings import Settings

SUBCOMMANDS = [command.name for command in cli.COMMANDS]


@pytest.fixture(autouse=True)
def no_running_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test sees its own (absent) note, never that of a demo running on this machine."""
    note = tmp_path / "stack.json"
    monkeypatch.setattr(discovery, "NOTE", note)
    for name in [n for n in os.environ if n.startswith("SIMSEARCH_")]:
        monkeypatch.delenv(name)
    return note


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in SUBCOMMANDS]])
def test_every_command_has_help_and_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    assert "usage: imgsearch" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["search"],
        ["search", "x.jpg", "-k", "many"],
        ["duplicates", "--near", "1.5"],
        ["duplicates", "--near", "close"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_search_of_a_missing_file_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["search", "no-such-file.jpg"]) == 1
    assert "cannot read no-such-file.jpg" in capsys.readouterr().err


def test_search_without_an_api_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "q.jpg"
    image.write_bytes(b"\xff\xd8")
    assert cli.main(["search", str(image), "--api", "http://127.0.0.1:9"]) == 1  # port 9: nothing listens
    assert "start one with `imgsearch serve`" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["failures"], ["ingest", "some/folder"], ["backfill"], ["reindex", "status"], ["duplicates"]]
)
def test_local_commands_without_a_running_stack_fail_with_a_hint(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1
    assert "no local stack is running" in capsys.readouterr().err


def test_a_stack_that_cannot_be_read_is_named_with_the_cause(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        assert cli.main(["reindex", "status", "--stack", "Nowhere", "--region", "eu-west-1"]) == 1
    assert "could not read stack Nowhere" in capsys.readouterr().err


def test_a_stack_without_the_reindex_outputs_says_to_deploy_this_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}, "Outputs": {"ApiUrl": {"Value": "x"}}}
    with mock_aws():
        boto3.client("cloudformation", region_name="eu-west-1").create_stack(
            StackName="Old", TemplateBody=json.dumps(template)
        )
        assert cli.main(["backfill", "--stack", "Old", "--region", "eu-west-1"]) == 1
    err = capsys.readouterr().err
    assert "no output ReindexStateMachine, ReindexFunction" in err and "deploy this version" in err


def test_an_invalid_s3_url_is_a_typed_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ingest", "s3://"]) == 1
    assert "error (invalid_request)" in capsys.readouterr().err


def test_serve_refuses_an_images_path_that_is_not_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--images", str(tmp_path / "missing")]) == 1
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"code": "invalid_image", "message": "not an image"}}, "not an image (invalid_image)"),
        ({"message": "Forbidden"}, "Forbidden"),  # API Gateway's own answer, e.g. a missing API key
        ("<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
    ],
)
def test_error_bodies_of_the_api_and_of_api_gateway_are_both_readable(body: object, message: str) -> None:
    assert cli._error_message(body) == message


def test_the_note_of_a_running_stack_round_trips(no_running_stack: Path, tmp_path: Path) -> None:
    settings = Settings(
        model_dir=tmp_path / "model", images_bucket="images", embedded_index_path=tmp_path / "i"
    )
    cloud = LocalCloud(
        endpoint="http://127.0.0.1:8001",
        region="us-east-1",
        bucket="images",
        queue_url="http://127.0.0.1:8001/123456789012/uploads",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:uploads",
        dead_letters_url="http://127.0.0.1:8001/123456789012/uploads-dead-letters",
    )
    running = discovery.RunningStack(url="http://127.0.0.1:8000", cloud=cloud, settings=settings)
    with discovery.announced(running, note=no_running_stack):
        assert discovery.find_running(no_running_stack) == running
        assert json.loads(no_running_stack.read_text())["url"] == "http://127.0.0.1:8000"
    assert discovery.find_running(no_running_stack) is None


def test_the_latest_inventory_manifest_is_found_and_its_absence_explained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="reports")
        stack = reindexing.Stack(
            "ImageSearch",
            {"ReportsBucket": "reports", "ImagesBucket": "images"},
            lambda service: boto3.client(service, region_name="us-east-1"),
        )
        with pytest.raises(CommandFailed, match="S3 delivers the first within 48 hours"):
            reindexing.latest_inventory(stack)
        for day in ("2026-12-04T01-00Z", "2026-12-05T01-00Z", "2026-11-30T01-00Z"):
            s3.put_object(Bucket="reports", Key=f"inventory/images/backfill/{day}/manifest.json", Body=b"{}")
        s3.put_object(Bucket="reports", Key="inventory/images/backfill/data/x.csv.gz", Body=b"")
        assert reindexing.latest_inventory(stack) == (
            "inventory/images/backfill/2026-12-05T01-00Z/manifest.json"
        )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on for the test's duration."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("flag", ["--port", "--s3-port"])
def test_serve_on_a_taken_port_fails_at_once_naming_the_port_and_the_flag(
    flag: str, taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "--s3-port" if flag == "--port" else "--port"
    argv = ["serve", flag, str(taken_port), other, "0", "--index-path", str(tmp_path / "i.sqlite")]
    started = time.monotonic()
    assert cli.main(argv) == 1
    assert time.monotonic() - started < 30  # before the model loads; moto's thread never leaves us waiting
    err = capsys.readouterr().err
    assert f"127.0.0.1:{taken_port}" in err
    assert "the port is in use (another `imgsearch serve`?); stop what listens there, or choose" in err
    assert err.rstrip().endswith(f"another port with {flag}")
    assert "Traceback" not in err
