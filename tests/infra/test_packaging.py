"""Is the Lambda bundle complete, within Lambda's 250 MB, cached, and importable on Lambda's Python?

The size check uses ResNet50 with synthetic weights: the same graph and the same fp32 bytes per weight as
the real checkpoint, which cannot be downloaded here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from infra.config import PROFILES
from infra.packaging import (
    BUNDLED_MODEL,
    HANDLERS,
    LAMBDA_PYTHON,
    PIP_TARGET,
    ROOT,
    UNZIPPED_LIMIT_BYTES,
    Bundle,
    build_bundle,
    lambda_python,
    resolve_model,
)
from simsearch.errors import ConfigError
from simsearch.manifest import ModelManifest
from simsearch.settings import Settings

pytestmark = [pytest.mark.infra, pytest.mark.slow]

LAMBDA_TAG = f"cpython-{LAMBDA_PYTHON.replace('.', '')}"
CONVERTER_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "lambdas"), str(ROOT)])}


@pytest.fixture(scope="session")
def resnet50_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    model_dir = tmp_path_factory.mktemp("resnet50")
    command = [
        sys.executable,
        "-m",
        "model.build",
        "--arch",
        "resnet50",
        "--synthetic",
        "--out",
        str(model_dir),
    ]
    subprocess.run(command, cwd=ROOT, env=CONVERTER_ENV, check=True, capture_output=True)
    return build_bundle(model_dir=model_dir)


def test_resnet50_fp32_bundle_fits_in_lambdas_250_mb_unzipped(resnet50_bundle: Bundle) -> None:
    manifest = ModelManifest.load(resnet50_bundle.path / BUNDLED_MODEL)
    assert (manifest.arch, manifest.quantization, manifest.embedding_dim) == ("resnet50", "none", 2048)
    size = resnet50_bundle.unzipped_bytes
    print(f"\nResNet50 fp32 bundle: {size / 2**20:.1f} MiB of {UNZIPPED_LIMIT_BYTES / 2**20:.0f} MiB")
    assert size <= UNZIPPED_LIMIT_BYTES


def test_bundle_holds_handlers_core_wheels_and_model_but_no_trimmed_part(resnet50_bundle: Bundle) -> None:
    root = resnet50_bundle.path
    for required in (
        "handlers/index_bootstrap.py",
        "simsearch/settings.py",
        "onnxruntime/capi",
        "numpy",
        "PIL",
    ):
        assert (root / required).exists(), required
    assert {p.name for p in (root / BUNDLED_MODEL).iterdir()} == {"model.onnx", "manifest.json"}
    leftovers = [
        *root.glob("onnxruntime/capi/libonnxruntime.so*"),
        *root.glob("onnxruntime/transformers"),
        *root.glob("grpc"),
        *(path for path in root.glob("**/__pycache__/*") if f".{LAMBDA_TAG}." not in path.name),
        *root.glob("**/tests"),
        *root.glob("boto3"),  # the Lambda runtime provides boto3; bundling it would shadow the runtime's
    ]
    assert leftovers == []


def test_the_bundle_carries_bytecode_of_lambdas_python_when_one_is_at_hand(resnet50_bundle: Bundle) -> None:
    """Lambda cannot write bytecode beside a read-only bundle: without it every cold start compiles."""
    compiled = list(resnet50_bundle.path.glob("**/__pycache__/*.pyc"))
    if lambda_python() is None:
        assert compiled == []  # the build machine's own bytecode would be useless on Lambda
        pytest.skip(f"no CPython {LAMBDA_PYTHON} on this machine: the bundle carries no bytecode")
    assert (resnet50_bundle.path / "simsearch" / "__pycache__" / f"settings.{LAMBDA_TAG}.pyc").is_file()
    assert (resnet50_bundle.path / "numpy" / "__pycache__" / f"__init__.{LAMBDA_TAG}.pyc").is_file()


def test_an_unchanged_bundle_is_reused_not_rebuilt(resnet50_bundle: Bundle) -> None:
    marker = resnet50_bundle.path / "handlers" / "index_bootstrap.py"
    inode = marker.stat().st_ino
    again = build_bundle(model_dir=resnet50_bundle.path / BUNDLED_MODEL)
    assert again == resnet50_bundle
    assert marker.stat().st_ino == inode


def test_a_checkpoint_that_is_not_the_release_stops_synth_with_the_converters_reason(tmp_path: Path) -> None:
    weights = tmp_path / "resnet50-0676ba61.pth"
    weights.write_bytes(b"not a checkpoint")
    config = PROFILES["dev"]
    with pytest.raises(ConfigError, match="sha256"):
        resolve_model(replace(config, model="resnet50", weights=str(weights)), models=tmp_path / "models")


def test_bundle_imports_and_embeds_on_lambdas_python(resnet50_bundle: Bundle, tmp_path: Path) -> None:
    """Run the bundle on CPython 3.12 (Lambda's), with boto3 beside it as the runtime provides it."""
    python = lambda_python()
    if python is None:
        pytest.skip(
            "no CPython 3.12 on this machine: the cp312 wheels cannot be imported by another version "
            "(set SIMSEARCH_PYTHON312 to an interpreter to run this check)"
        )
    runtime = tmp_path / "runtime"  # stands in for /var/runtime, which comes after /var/task on sys.path
    boto3 = _pinned("boto3")
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PIP_TARGET]
    subprocess.run([*install, "--target", str(runtime), boto3], check=True, capture_output=True)
    modules = [m for m in (h.rpartition(".")[0] for h in HANDLERS) if _in_bundle(resnet50_bundle, m)]
    settings = Settings(model_dir=resnet50_bundle.path / BUNDLED_MODEL, images_bucket="smoke")
    env = {
        **settings.to_env(),  # what infra sets; nothing is contacted at import time
        "PYTHONPATH": f"{resnet50_bundle.path}{os.pathsep}{runtime}",
        "PATH": os.environ["PATH"],
        "AWS_REGION": "us-east-1",  # Lambda always sets it
        "PYTHONDONTWRITEBYTECODE": "1",  # the bundle is the cached deployable: leave no __pycache__ in it
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith("LD_")})
    result = subprocess.run(
        [python, "-c", SMOKE, str(resnet50_bundle.path / BUNDLED_MODEL), *modules],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "embedding (1, 2048) norm 1.000" in result.stdout, result.stdout


SMOKE = """
import importlib, json, sys
import numpy as np, onnxruntime as ort, PIL.Image, opensearchpy, boto3, botocore.session
model_dir, modules = sys.argv[1], sys.argv[2:]
assert sys.version_info[:2] == (3, 12), sys.version
for module in modules:
    importlib.import_module(module)
boto3.client("s3", region_name="us-east-1")  # botocore imports dateutil: the bundle's shadows it
manifest = json.load(open(f"{model_dir}/manifest.json"))
session = ort.InferenceSession(f"{model_dir}/{manifest['onnx_file']}", providers=["CPUExecutionProvider"])
size = manifest["input_size"]
image = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
[embedding] = session.run([manifest["output_name"]], {manifest["input_name"]: image})
print(f"embedding {embedding.shape} norm {float(np.linalg.norm(embedding)):.3f}", "modules", modules)
"""


def _in_bundle(bundle: Bundle, module: str) -> bool:
    return (bundle.path / Path(*module.split("."))).with_suffix(".py").exists()


def _pinned(package: str) -> str:
    """The development pin of ``package`` in requirements.txt (boto3 there matches what Lambda provides)."""
    text = (ROOT / "requirements.txt").read_text()
    match = re.search(rf"^{package}==[^\s#]+", text, re.MULTILINE)
    assert match, f"{package} is not pinned in requirements.txt"
    return match.group(0)


def test_a_prebuilt_model_directory_is_deployed_as_given(model_dir: Path, tmp_path: Path) -> None:
    config = replace(PROFILES["dev"], model_dir=str(model_dir))
    assert resolve_model(config, models=tmp_path / "models") == model_dir.resolve()
    assert not (tmp_path / "models").exists()  # nothing converted
    with pytest.raises(ConfigError, match="no model manifest"):
        resolve_model(replace(config, model_dir=str(tmp_path)), models=tmp_path / "models")
