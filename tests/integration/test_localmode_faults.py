"""Local mode as an unlucky user meets it: killed with SIGKILL half-way through ingestion, then started
again; an index or cache folder it may not write. ``imgsearch serve`` runs in a subprocess, as a user runs it.

After a restart the index must mirror the bucket: no document without its object, every object indexed
exactly once or recorded in the failure log. A storage fault stops the start with the path, the cause and
the fix, never with a traceback or a stack that says "ok" and then fails every upload.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
import requests

from localmode.cloud import CREDENTIALS
from localmode.discovery import NOTE
from simsearch.ids import image_id_for
from simsearch.index.embedded import EmbeddedFailureLog, EmbeddedIndex
from simsearch.manifest import ModelManifest
from tests.conftest import ROOT
from tests.image_factories import photo, reframed
from tests.localmode_world import write_corpus

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 120
SETTLE_TIMEOUT_S = 240
BROKEN = "broken/half.jpg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Serve:
    """``imgsearch serve`` in a subprocess of its own, its output read line by line as it comes."""

    def __init__(self, argv: list[str], *, cwd: Path, wrapper: list[str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'lambdas'}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1"}
        command = [*(wrapper or []), sys.executable, "-m", "localmode.cli", "serve", *argv]
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._arrived: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._arrived.put(line)

    def wait_for(self, found: Callable[[str], bool], *, timeout: float) -> str:
        """The first line (already printed or to come) for which ``found`` is true."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if found(line):
                    return line
            seen = len(self.lines)
            assert self.process.poll() is None or not self._arrived.empty(), self.output
            try:
                self._arrived.get(timeout=0.5)
            except queue.Empty:
                continue
        raise AssertionError(f"no such line within {timeout} s:\n{self.output}")

    def exit_status(self, *, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def serving(argv: list[str], *, cwd: Path, wrapper: list[str] | None = None) -> Iterator[Serve]:
    serve = Serve(argv, cwd=cwd, wrapper=wrapper)
    try:
        yield serve
    finally:
        serve.stop()


def serve_argv(folder: Path, *, model_dir: Path, index_path: Path | None, api: int, s3: int) -> list[str]:
    where = ["--index-path", str(index_path)] if index_path is not None else []
    return [
        "--images",
        str(folder),
        "--model-dir",
        str(model_dir),
        *where,
        "--port",
        str(api),
        "--s3-port",
        str(s3),
    ]


def the_url(line: str) -> bool:
    return line.strip().startswith("Open http://")


def s3_client(port: int) -> object:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
    )


def documents(api: int) -> int:
    return int(requests.get(f"http://127.0.0.1:{api}/health", timeout=10).json()["documents"])


def eventually(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The six pictures, 40 photographs, and one broken file: enough that ingestion takes a while."""
    images = tmp_path / "images"
    keys = write_corpus(images)
    for n in range(40):
        (images / "more").mkdir(exist_ok=True)
        (images / "more" / f"p{n:02}.jpg").write_bytes(photo(n, size=(320, 240)))
    (images / BROKEN).parent.mkdir()
    (images / BROKEN).write_bytes(
        reframed((images / keys["china"]).read_bytes(), keep=1, scale=1, quality=90)[:600]
    )
    return images


def test_after_a_kill_during_ingestion_a_restart_makes_the_index_mirror_the_bucket(
    folder: Path, model_dir: Path, tmp_path: Path
) -> None:
    index_path = tmp_path / "index.sqlite"
    extras = [f"uploaded-later/x{n}.png" for n in range(3)]  # put into the bucket, not the folder

    api, s3 = free_port(), free_port()
    first = Serve(
        serve_argv(folder, model_dir=model_dir, index_path=index_path, api=api, s3=s3), cwd=tmp_path
    )
    try:
        first.wait_for(the_url, timeout=START_TIMEOUT_S)
        eventually(lambda: documents(api) >= 3, timeout=SETTLE_TIMEOUT_S, what="ingestion never started")
        bucket = s3_client(s3)
        for key in extras:
            bucket.put_object(Bucket="images", Key=key, Body=photo(len(key) * 7))  # type: ignore[attr-defined]
        extra_url = f"http://127.0.0.1:{api}/images/{image_id_for('images', extras[0])}"
        eventually(
            lambda: requests.get(extra_url, timeout=10).status_code == 200,
            timeout=SETTLE_TIMEOUT_S,
            what="no extra indexed",
        )
        for n in range(10):  # uploads still in flight when the process dies
            bucket.put_object(Bucket="images", Key=f"late/{n}.jpg", Body=photo(100 + n))  # type: ignore[attr-defined]
    finally:
        first.process.kill()  # SIGKILL: no cleanup, the queue and the bucket vanish with moto
        first.process.wait()

    api, s3 = free_port(), free_port()
    with serving(
        serve_argv(folder, model_dir=model_dir, index_path=index_path, api=api, s3=s3), cwd=tmp_path
    ) as again:
        again.wait_for(lambda line: "images searchable" in line, timeout=SETTLE_TIMEOUT_S)
        stored = {item["Key"] for item in s3_client(s3).list_objects_v2(Bucket="images")["Contents"]}  # type: ignore[attr-defined]
        manifest = ModelManifest.load(model_dir)
        index = EmbeddedIndex.open(
            index_path, prefix="images", model_id=manifest.model_id, dim=manifest.embedding_dim
        )
        listed = [item.metadata.key for item in index.scan()]
        failed = {record.key for record in EmbeddedFailureLog.open(index_path).recent(100)}
        removed_line = again.wait_for(lambda line: line.startswith("removed "), timeout=1)

    assert len(listed) == len(set(listed))  # every object at most once
    assert set(listed) <= stored  # no document without its object
    assert set(listed) | failed == stored  # every object indexed or recorded as a failure
    assert failed & stored == {BROKEN}
    assert extras[0] in removed_line  # indexed in the first run, gone with its moto: named as removed
    assert "Traceback" not in again.output


def as_file_modes_apply() -> list[str]:
    """A prefix that makes file modes bind this process as they bind a user: root ignores them unless
    the capabilities that let it are dropped (``setpriv``, util-linux)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to test file modes as root"
    dropped = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, "--bounding-set", dropped, "--inh-caps", dropped]


@pytest.mark.parametrize(
    "fault",
    ["read-only index file", "read-only index folder", "read-only cache folder", "read-only note folder"],
)
def test_serve_stops_at_start_naming_the_path_the_cause_and_the_fix(
    fault: str, folder: Path, model_dir: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    index_path: Path | None = work / "index" / "index.sqlite"
    expected = "cannot be written"
    if fault == "read-only index file":
        EmbeddedIndex.open(work / "index" / "index.sqlite", prefix="images", model_id="m", dim=4).close()
        (work / "index" / "index.sqlite").chmod(0o444)
        blamed = work / "index"
    elif fault == "read-only index folder":
        (work / "index").mkdir(parents=True)
        (work / "index").chmod(0o555)
        blamed = work / "index"
    else:
        (work / ".cache").mkdir(parents=True)
        (work / ".cache").chmod(0o555)
        blamed = work / ".cache"
        if fault == "read-only cache folder":
            index_path = None  # the default: one index per image folder under .cache/localmode
        else:
            index_path = tmp_path / "elsewhere" / "index.sqlite"  # only the note goes under .cache
            expected = "cannot write"
    argv = serve_argv(folder, model_dir=model_dir, index_path=index_path, api=free_port(), s3=free_port())
    with serving(argv, cwd=work, wrapper=as_file_modes_apply()) as serve:
        status = serve.exit_status(timeout=START_TIMEOUT_S)
    assert status == 1, serve.output
    assert "error (config_error): " in serve.output
    assert expected in serve.output
    assert str(blamed) in serve.output and "writable by this user" in serve.output
    assert "Traceback" not in serve.output


def test_serve_stopped_by_sigterm_shuts_down_as_ctrl_c_does(
    folder: Path, model_dir: Path, tmp_path: Path
) -> None:
    """``kill``, systemd, Docker and CI runners stop a process with SIGTERM: the stack must close as it
    does on Ctrl-C, and take down the note that tells the other commands where it runs."""
    argv = serve_argv(
        folder, model_dir=model_dir, index_path=tmp_path / "index.sqlite", api=free_port(), s3=free_port()
    )
    with serving(argv, cwd=tmp_path) as serve:
        serve.wait_for(the_url, timeout=START_TIMEOUT_S)
        note = tmp_path / NOTE
        assert note.is_file()
        serve.process.send_signal(signal.SIGTERM)
        status = serve.exit_status(timeout=60)
    assert (status, note.exists()) == (0, False), serve.output
    assert serve.output.splitlines()[-1] == "stopped"
    assert "Traceback" not in serve.output
