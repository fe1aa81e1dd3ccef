"""Getting an official checkpoint: torch's cache, ours, or a resumable, verified download.

A server on 127.0.0.1 (``tests.checkpoint_server``) stands in for download.pytorch.org and serves a
synthetic ResNet50 checkpoint (``model.synthetic`` weights in torch's zip format); the test release pins
that file's sha256 and size the way ``model/architectures/resnet50.py`` pins the real one's. Nothing here
reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from localmode import cli
from model.architectures import RESNET50
from model.build import main as build_main
from model.checkpoint_cache import CheckpointCaches, fetch
from model.checkpoint_cache import main as cache_status
from model.download import download
from model.errors import WeightsIntegrityError, WeightsUnavailableError
from model.releases import TEST_PIN_VARIABLE, OfficialDownload, Release
from model.synthetic import synthetic_state_dict
from simsearch.manifest import ModelManifest
from tests.checkpoint_factories import checkpoint_bytes
from tests.checkpoint_server import CheckpointServer

FILE_NAME = "resnet50-0676ba61.pth"
UNREACHABLE = "http://127.0.0.1:9/models"  # the discard port: refused at once, no network needed
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    """A loadable ResNet50 checkpoint the size of the real one (~98 MiB), made without a download."""
    return checkpoint_bytes(synthetic_state_dict(RESNET50.layout()))


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 must not go through a proxy the machine happens to configure."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def server(checkpoint: bytes) -> Iterator[CheckpointServer]:
    with CheckpointServer(checkpoint) as running:
        yield running


@pytest.fixture
def caches(tmp_path: Path) -> CheckpointCaches:
    return CheckpointCaches(torch_hub=tmp_path / "torch/hub/checkpoints", ours=tmp_path / "ours")


def release_at(url: str, checkpoint: bytes) -> Release:
    """The default ResNet50 release, pinned to the synthetic file and served from ``url``."""
    return replace(
        RESNET50.releases[0],
        origin=OfficialDownload(url),
        sha256=hashlib.sha256(checkpoint).hexdigest(),
        size=len(checkpoint),
    )


def served(server: CheckpointServer, checkpoint: bytes) -> tuple[Release, OfficialDownload]:
    release = release_at(server.url_for(FILE_NAME), checkpoint)
    assert isinstance(release.origin, OfficialDownload)
    return release, release.origin


def test_the_caches_follow_torch_and_xdg_conventions(tmp_path: Path) -> None:
    home = Path.home()
    assert CheckpointCaches.from_env({}) == CheckpointCaches(
        torch_hub=home / ".cache/torch/hub/checkpoints", ours=home / ".cache/simsearch/checkpoints"
    )
    assert CheckpointCaches.from_env({"XDG_CACHE_HOME": str(tmp_path)}) == CheckpointCaches(
        torch_hub=tmp_path / "torch/hub/checkpoints", ours=tmp_path / "simsearch/checkpoints"
    )
    torch_home = CheckpointCaches.from_env({"XDG_CACHE_HOME": str(tmp_path), "TORCH_HOME": "/opt/torch"})
    assert torch_home.torch_hub == Path("/opt/torch/hub/checkpoints")


def test_a_download_lands_verified_in_our_cache_and_is_never_fetched_again(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release, origin = served(server, checkpoint)

    first = fetch(release, origin, caches)
    second = fetch(release, origin, caches)

    assert first == second
    assert first.sha256 == hashlib.sha256(checkpoint).hexdigest()
    assert (caches.ours / FILE_NAME).read_bytes() == checkpoint
    assert sorted(p.name for p in caches.ours.iterdir()) == [FILE_NAME]  # no .part left behind
    assert server.seen == [(f"/models/{FILE_NAME}", None)]


def test_the_command_downloads_and_converts_resnet50_end_to_end(
    server: CheckpointServer, checkpoint: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What synth runs: the pins reach the subprocess only through the test-only variable."""
    sha256 = hashlib.sha256(checkpoint).hexdigest()
    pin = {
        "file_name": FILE_NAME,
        "sha256": sha256,
        "size": len(checkpoint),
        "url": server.url_for(FILE_NAME),
    }
    monkeypatch.setenv(TEST_PIN_VARIABLE, json.dumps(pin))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    assert build_main(["--arch", "resnet50", "--out", str(tmp_path / "model")]) == 0

    manifest = ModelManifest.load(tmp_path / "model")
    assert (manifest.arch, manifest.weights, manifest.weights_file) == (
        "resnet50",
        "IMAGENET1K_V1",
        FILE_NAME,
    )
    assert manifest.weights_sha256 == sha256
    assert (tmp_path / "xdg/simsearch/checkpoints" / FILE_NAME).is_file()


def test_torchs_cached_copy_is_used_without_a_request(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release, origin = served(server, checkpoint)
    caches.torch_hub.mkdir(parents=True)
    (caches.torch_hub / FILE_NAME).write_bytes(checkpoint)

    assert fetch(release, origin, caches).data == checkpoint
    assert server.seen == []
    assert not caches.ours.exists()


def test_a_damaged_copy_in_torchs_cache_is_skipped_and_left_alone(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches, caplog: pytest.LogCaptureFixture
) -> None:
    release, origin = served(server, checkpoint)
    caches.torch_hub.mkdir(parents=True)
    (caches.torch_hub / FILE_NAME).write_bytes(checkpoint[:-1])

    with caplog.at_level(logging.WARNING):
        assert fetch(release, origin, caches).data == checkpoint

    assert (caches.torch_hub / FILE_NAME).read_bytes() == checkpoint[:-1]  # torch's file, not ours to delete
    assert "ignoring torch's cached copy" in caplog.text
    assert len(server.seen) == 1


def test_a_damaged_copy_in_our_cache_is_removed_and_downloaded_again(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release, origin = served(server, checkpoint)
    caches.ours.mkdir(parents=True)
    (caches.ours / FILE_NAME).write_bytes(b"\0" * len(checkpoint))  # right size, wrong bytes

    assert fetch(release, origin, caches).data == checkpoint
    assert (caches.ours / FILE_NAME).read_bytes() == checkpoint


def test_a_download_with_the_wrong_sha256_is_refused_and_removed(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release, origin = served(server, checkpoint)
    server.behaviour.body = checkpoint[:-1] + bytes([checkpoint[-1] ^ 1])  # same size, one bit flipped

    with pytest.raises(WeightsIntegrityError, match=r"has sha256 .*The download was removed: run again"):
        fetch(release, origin, caches)

    assert list(caches.ours.iterdir()) == []


def test_a_cut_transfer_is_continued_with_a_range_request(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release, origin = served(server, checkpoint)
    cut = len(checkpoint) // 3
    server.behaviour.cut_after = cut

    assert fetch(release, origin, caches).data == checkpoint
    (_, first), (_, second) = server.seen
    assert first is None
    assert second is not None and 0 < int(second.removeprefix("bytes=").removesuffix("-")) <= cut


def test_a_part_left_by_an_interrupted_run_is_continued(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release, origin = served(server, checkpoint)
    caches.ours.mkdir(parents=True)
    (caches.ours / f"{FILE_NAME}.part").write_bytes(checkpoint[:1000])

    assert fetch(release, origin, caches).data == checkpoint
    assert server.seen == [(f"/models/{FILE_NAME}", "bytes=1000-")]


def test_a_server_that_ignores_range_restarts_the_file(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release, origin = served(server, checkpoint)
    server.behaviour.honour_range = False  # answers 200 with the whole file
    caches.ours.mkdir(parents=True)
    (caches.ours / f"{FILE_NAME}.part").write_bytes(checkpoint[:1000])

    assert fetch(release, origin, caches).data == checkpoint


def test_a_whole_part_answered_416_is_complete(
    server: CheckpointServer, checkpoint: bytes, tmp_path: Path
) -> None:
    part = tmp_path / "file.part"
    part.write_bytes(checkpoint)

    download(server.url_for(FILE_NAME), part, size=None)

    assert part.read_bytes() == checkpoint
    assert server.seen == [(f"/models/{FILE_NAME}", f"bytes={len(checkpoint)}-")]


def test_a_part_longer_than_the_file_answered_416_restarts(
    server: CheckpointServer, checkpoint: bytes, tmp_path: Path
) -> None:
    part = tmp_path / "file.part"
    part.write_bytes(checkpoint + b"stale tail")

    download(server.url_for(FILE_NAME), part, size=None)

    assert part.read_bytes() == checkpoint
    assert [range_ for _, range_ in server.seen] == [f"bytes={len(checkpoint) + 10}-", None]


def test_a_server_error_says_what_failed_and_what_to_do(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release, origin = served(server, checkpoint)
    server.behaviour.status = 503

    with pytest.raises(WeightsUnavailableError) as caught:
        fetch(release, origin, caches)

    message = str(caught.value)
    assert f"could not download {origin.url}" in message
    assert "the server answered 503 Service Unavailable" in message
    assert str(caches.ours / FILE_NAME) in message
    assert f"-c weights=/path/to/{FILE_NAME}" in message


def test_offline_the_error_names_the_url_the_cache_path_and_the_weights_route(
    checkpoint: bytes, caches: CheckpointCaches
) -> None:
    release = release_at(f"{UNREACHABLE}/{FILE_NAME}", checkpoint)
    assert isinstance(release.origin, OfficialDownload)

    with pytest.raises(WeightsUnavailableError) as caught:
        fetch(release, release.origin, caches)

    message = str(caught.value)
    assert f"could not download {UNREACHABLE}/{FILE_NAME}" in message
    assert f"goes to {caches.ours / FILE_NAME}" in message
    assert f"-c weights=/path/to/{FILE_NAME}" in message
    assert "--weights PATH" in message
    assert not (caches.ours / FILE_NAME).exists()


def test_the_download_goes_through_the_proxy_the_environment_names(
    server: CheckpointServer, checkpoint: bytes, caches: CheckpointCaches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.origin)
    url = f"http://download.invalid/models/{FILE_NAME}"  # resolvable by no one but the proxy
    release = release_at(url, checkpoint)
    assert isinstance(release.origin, OfficialDownload)

    assert fetch(release, release.origin, caches).data == checkpoint
    assert server.seen == [(url, None)]  # absolute-form target: it arrived as a proxy request


def test_the_status_command_says_what_it_would_download_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    assert cache_status(["--arch", "resnet50"]) == 1

    out = capsys.readouterr().out
    assert f"https://download.pytorch.org/models/{FILE_NAME} (97.8 MiB)" in out
    assert f"to {tmp_path / 'simsearch/checkpoints' / FILE_NAME}" in out


def test_the_status_command_finds_a_verified_copy_in_torchs_cache(
    checkpoint: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = {"file_name": FILE_NAME, "sha256": hashlib.sha256(checkpoint).hexdigest(), "size": len(checkpoint)}
    monkeypatch.setenv(TEST_PIN_VARIABLE, json.dumps(pin))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub/checkpoints").mkdir(parents=True)
    (tmp_path / "hub/checkpoints" / FILE_NAME).write_bytes(checkpoint)

    assert cache_status(["--arch", "resnet50"]) == 0


def test_imgsearch_build_model_takes_resnet50_from_torchs_cache(
    checkpoint: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same path as synth and `make model-resnet50`, into build/models/resnet50 by default."""
    pin = {"file_name": FILE_NAME, "sha256": hashlib.sha256(checkpoint).hexdigest(), "size": len(checkpoint)}
    monkeypatch.setenv(TEST_PIN_VARIABLE, json.dumps({**pin, "url": f"{UNREACHABLE}/{FILE_NAME}"}))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "torch/hub/checkpoints").mkdir(parents=True)
    (tmp_path / "torch/hub/checkpoints" / FILE_NAME).write_bytes(checkpoint)
    monkeypatch.chdir(tmp_path)

    assert cli.main(["build-model", "--arch", "resnet50"]) == 0

    assert ModelManifest.load(tmp_path / "build/models/resnet50").weights_sha256 == pin["sha256"]
