"""``imgsearch duplicates``: clusters over a whole index, on both backends, after a real backfill.

The settings come from ``SIMSEARCH_*`` variables (an operator pointing the CLI at an index); the
bucket is moto's, filled with the pictures of ``tests.query_fixtures``: china.jpg three times (exact
duplicates) and once as a PNG (a near duplicate: the same pixels, other bytes), flower.jpg and its
JPEG re-encoding at quality 40 (near: 0.98 with MobileNetV2), china.jpg with a part of the scene moved
(another frame: 0.978 with MobileNetV2, so near by the cosine alone, but not the same picture by its
pixels), and four patterns with nothing alike (at most 0.6). ``imgsearch backfill`` indexes them with
the real model, then ``duplicates`` reads the serving index and, for the picture check, the bucket.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from opensearchpy import OpenSearch

from localmode import discovery
from localmode.harness import local_settings
from simsearch.ids import content_id
from simsearch.preprocess import decode_image
from simsearch.settings import Settings
from tests.cli_run import imgsearch
from tests.image_factories import another_frame, encode
from tests.query_fixtures import LIMITS, pictures

pytestmark = pytest.mark.integration

BUCKET = "images"


def bucket_contents() -> dict[str, bytes]:
    found = pictures()
    china, flower = found["china"], found["flower"]
    return {
        "photos/china.jpg": china,
        "archive/china.jpg": china,
        "archive/2024/china.jpg": china,
        "photos/china.png": encode(decode_image(china, limits=LIMITS).rgb, "PNG"),
        "photos/china-frame.jpg": another_frame(decode_image(china, limits=LIMITS).rgb),
        "photos/flower.jpg": flower,
        "photos/flower-q40.jpg": encode(decode_image(flower, limits=LIMITS).rgb, "JPEG", quality=40),
        **{f"patterns/{name}.png": found[name] for name in ("rings", "checker", "stripes", "blobs")},
    }


CONTENTS = bucket_contents()


@pytest.fixture(params=["embedded", pytest.param("opensearch", marks=pytest.mark.integration)])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings of an index holding the bucket's images, indexed by ``imgsearch backfill``."""
    monkeypatch.setattr(discovery, "NOTE", tmp_path / "no-stack.json")
    prefix = f"t{uuid.uuid4().hex[:12]}"
    local = local_settings(
        model_dir=model_dir, index_path=tmp_path / "index.sqlite", index_prefix=prefix, ort_threads=2
    )
    local = Settings.from_env({**local.to_env(), "SIMSEARCH_IMAGES_BUCKET": BUCKET})
    if request.param == "opensearch":
        local = replace(local, opensearch_url=request.getfixturevalue("opensearch_url"))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for key, data in CONTENTS.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        status, filled = run(monkeypatch, local, "backfill", "--json")
        assert status == 0 and filled["counts"] == {"indexed": len(CONTENTS)}, filled
        if local.opensearch_url:
            client: OpenSearch = request.getfixturevalue("opensearch_client")
            client.indices.refresh(index=f"{prefix}-*")
            yield local
            client.indices.delete(index=f"{prefix}-*")
        else:
            yield local


def run(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> tuple[int, Any]:
    """``imgsearch <argv>`` with ``settings`` in the environment: (exit status, stdout, parsed if JSON)."""
    status, out = imgsearch(monkeypatch, settings, *argv)
    return status, json.loads(out) if "--json" in argv else out


def keys_of(cluster: dict[str, Any]) -> list[list[str]]:
    return [[image["key"] for image in content["images"]] for content in cluster["contents"]]


CHINA = len(CONTENTS["photos/china.jpg"])
CHINA_PNG = len(CONTENTS["photos/china.png"])
FLOWER, FLOWER_Q40 = len(CONTENTS["photos/flower.jpg"]), len(CONTENTS["photos/flower-q40.jpg"])


def test_exact_duplicates_are_clustered_by_content_and_their_spare_copies_counted(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, report = run(monkeypatch, settings, "duplicates", "--json")

    assert status == 0
    assert (report["images"], report["contents"], report["threshold"], report["near"]) == (11, 9, None, None)
    assert report["picture_check"] is None
    assert report["exact"] == {"contents": 1, "images": 3, "reclaimable_bytes": 2 * CHINA}
    [cluster] = report["clusters"]
    assert keys_of(cluster) == [["archive/2024/china.jpg", "archive/china.jpg", "photos/china.jpg"]]
    assert cluster["contents"][0]["content_sha256"] == content_id(CONTENTS["photos/china.jpg"])
    assert (cluster["images"], cluster["reclaimable_bytes"]) == (3, 2 * CHINA)


def test_near_duplicates_join_clusters_and_the_largest_file_is_the_one_kept(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, report = run(monkeypatch, settings, "duplicates", "--near", "--json")

    assert status == 0
    assert report["threshold"] == settings.near_duplicate_threshold == 0.954
    assert report["picture_check"] == {
        "gate": settings.near_duplicate_gate,
        "threshold": settings.picture_match_threshold,
    }
    china, flower = report["clusters"]  # most images first
    assert keys_of(china) == [
        ["photos/china.png"],  # the PNG is the largest file: kept
        ["archive/2024/china.jpg", "archive/china.jpg", "photos/china.jpg"],
    ]
    assert china["reclaimable_bytes"] == 3 * CHINA
    assert sorted(map(tuple, keys_of(flower))) == [("photos/flower-q40.jpg",), ("photos/flower.jpg",)]
    assert flower["reclaimable_bytes"] == min(FLOWER, FLOWER_Q40)
    assert report["near"] == {
        "clusters": 2,
        "contents": 4,
        "reclaimable_bytes": CHINA + min(FLOWER, FLOWER_Q40),
    }
    assert report["reclaimable_bytes"] == 3 * CHINA + min(FLOWER, FLOWER_Q40)
    # the moved frame scores above the cosine threshold, but its pixels do not line up: not a duplicate
    assert "photos/china-frame.jpg" not in str(report["clusters"])


def test_the_cosine_alone_takes_another_frame_for_the_same_picture(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the picture check is for: ``--near 0.954`` (the cosine threshold, no image read) joins it."""
    status, report = run(monkeypatch, settings, "duplicates", "--near", "0.954", "--json")
    assert status == 0 and report["picture_check"] is None
    china = report["clusters"][0]
    assert ["photos/china-frame.jpg"] in keys_of(china)


def test_a_threshold_above_every_near_pair_leaves_the_exact_cluster_alone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, report = run(monkeypatch, settings, "duplicates", "--near", "0.99", "--json")
    assert status == 0
    # the PNG has the JPEG's very pixels: its vector is the same, at any threshold
    assert [len(cluster["contents"]) for cluster in report["clusters"]] == [2]
    assert report["near"]["contents"] == 2


def test_the_text_report_counts_and_lists_the_largest_clusters_file_by_file(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, text = run(monkeypatch, settings, "duplicates", "--near", "--top", "1")

    assert status == 0
    lines = text.splitlines()
    assert lines[0].endswith(": 11 images, 9 distinct contents")
    assert lines[1].startswith("exact duplicates: 1 contents stored more than once (3 images); ")
    assert lines[2].startswith(
        "near duplicates (similarity ≥ 0.875 and pixels matching ≥ 0.959; unreadable images: "
        "similarity ≥ 0.954): 2 clusters of 4 contents; "
    )
    assert lines[3] == "largest clusters (1 of 2):"
    assert lines[4].startswith("   1. 4 images of 2 contents, ")
    roles = [line.split()[2:] for line in lines[5:]]
    assert roles == [
        ["kept", "photos/china.png"],
        ["near", "duplicate", "archive/2024/china.jpg"],
        ["↳", "same", "bytes", "archive/china.jpg"],
        ["↳", "same", "bytes", "photos/china.jpg"],
    ]
    assert "scan" in capsys.readouterr().err  # the progress bars
