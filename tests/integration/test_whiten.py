"""``python -m model.whiten``: fitting on a folder or an S3 prefix (moto), labelled as ingestion labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from localmode.cloud import LocalCloud
from model.projection import DEFAULTS
from model.whiten import main, s3_corpus
from simsearch.embedder import OnnxEmbedder
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits
from tests.eval_datasets import folder_dataset, pattern_jpeg
from tests.integration.ingest_world import Uploads

pytestmark = pytest.mark.slow


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Three labelled folders of 8 images, an unlabelled image at the top, and a file that is no image."""
    root = folder_dataset(tmp_path / "corpus", {"cats": 8, "dogs": 8, "owls": 8})
    (root / "loose.jpg").write_bytes(pattern_jpeg(500))
    (root / "owls" / "notes.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def test_a_folder_fit_writes_a_whitened_model_that_embeds_to_its_dimensions(
    corpus: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "whitened"
    argv = [str(corpus), "--model-dir", str(model_dir), "--dims", "8", "--out", str(out), "--threads", "1"]
    assert main(argv) == 0

    manifest = ModelManifest.load(out)
    assert manifest.projection == "learned-whitening"  # the default method
    assert (manifest.projection_images, manifest.projection_labels) == (25, 3)  # the broken file is skipped
    assert manifest.projection_shrinkage == DEFAULTS["learned"].shrinkage
    printed = capsys.readouterr()
    assert "skipped (not a decodable image): owls/notes.jpg" in printed.err
    assert manifest.model_id in printed.out
    vectors = OnnxEmbedder.load(out, threads=1).embed_images(
        [pattern_jpeg(1)], limits=ImageLimits(max_bytes=1 << 20, max_pixels=1 << 20)
    )
    assert vectors.shape == (1, 8)


def test_without_out_the_model_lands_in_build_models_under_its_id(
    corpus: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [str(corpus), "--model-dir", str(model_dir), "--method", "pca", "--dims", "4"]
    assert main(argv) == 0
    assert main(argv) == 0  # the same fit again replaces its directory
    (directory,) = (tmp_path / "build" / "models").iterdir()
    manifest = ModelManifest.load(directory)
    assert directory.name == manifest.model_id
    assert "-pcaw4-" in manifest.model_id


@pytest.mark.parametrize(
    ("setup", "method", "message"),
    [
        (lambda root: root / "missing", "learned", "neither a folder nor an s3:// URL"),
        (lambda root: root / "owls", "learned", "needs a label with at least two images"),
    ],
)
def test_a_corpus_that_cannot_be_fitted_is_a_typed_error(
    corpus: Path,
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: object,
    method: str,
    message: str,
) -> None:
    source = setup(corpus)  # type: ignore[operator]
    argv = [str(source), "--model-dir", str(model_dir), "--method", method, "--dims", "4"]
    argv += ["--out", str(tmp_path / "w")]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_an_s3_corpus_is_labelled_as_ingestion_labels_it_and_query_uploads_are_left_out(
    cloud: LocalCloud,
) -> None:
    uploads = Uploads.of(cloud)
    uploads.put("cats/1.jpg", pattern_jpeg(1))
    uploads.put("cats/2.jpg", pattern_jpeg(2), Metadata={"label": "lions"})  # the uploader's label wins
    uploads.put("loose.jpg", pattern_jpeg(3))
    uploads.put("_queries/someone.jpg", pattern_jpeg(4))

    images = list(s3_corpus(uploads.s3, f"s3://{uploads.bucket}", skip_prefix="_queries/"))

    assert [(image.key, image.label) for image in images] == [
        ("cats/1.jpg", "cats"),
        ("cats/2.jpg", "lions"),
        ("loose.jpg", None),
    ]
    assert images[0].read() == pattern_jpeg(1)


def test_an_s3_fit_reads_the_bucket_through_boto3(cloud: LocalCloud, model_dir: Path, tmp_path: Path) -> None:
    uploads = Uploads.of(cloud)
    for n in range(12):
        uploads.put(f"{'ab'[n % 2]}/{n}.jpg", pattern_jpeg(n))
    out = tmp_path / "w"
    argv = [f"s3://{uploads.bucket}/", "--model-dir", str(model_dir), "--dims", "4", "--out", str(out)]
    assert main(argv) == 0
    manifest = ModelManifest.load(out)
    assert (manifest.projection_images, manifest.projection_labels) == (12, 2)
    assert manifest.projection_shrinkage == DEFAULTS["learned"].shrinkage


def test_imgsearch_whiten_is_the_same_command(corpus: Path, model_dir: Path, tmp_path: Path) -> None:
    from localmode.cli import main as imgsearch

    out = tmp_path / "w"
    assert (
        imgsearch(["whiten", str(corpus), "--model-dir", str(model_dir), "--dims", "4", "--out", str(out)])
        == 0
    )
    assert ModelManifest.load(out).projection == "learned-whitening"
