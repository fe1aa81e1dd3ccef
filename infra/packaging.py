"""The Lambda code asset, built on this machine without Docker, and the model it carries.

One directory holds everything the functions import: the runtime wheels for Lambda's platform
(``pip install --platform ... --only-binary=:all: --target``), ``simsearch`` and ``handlers``, and the
embedding model. Lambda's limit is 250 MB unzipped, and ONNX Runtime, numpy and a fp32 ResNet50 come close
to it, so the wheels are trimmed of what the functions never load (``TRIMMED`` says why for each rule,
with the size it saves). Both layers are cached under ``.cache/bundles/`` by a hash of their inputs: a
synth with unchanged inputs reuses the directory and the CDK skips re-hashing it (``AssetHashType.CUSTOM``).

Bytecode: Lambda's ``/var/task`` is read-only, so a bundle without it compiles every module it imports from
source at every cold start, half of it (``make bench-coldstart``). When an interpreter of Lambda's Python
is at hand (``lambda_python``), the bundle carries bytecode compiled by it (``unchecked-hash``: valid
whatever the timestamps unzipping gives the sources); without one it carries none, as before, and works
the same, only slower to start.

Standard library only besides ``aws_cdk`` in ``lambda_code``: ``devtools/build_lambda_bundle.py`` and
the tests build bundles without synthesising anything.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_

from infra.config import DeploymentConfig
from simsearch.errors import ConfigError
from simsearch.manifest import MANIFEST_FILE, ModelManifest

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = ROOT / "lambdas"
REQUIREMENTS = LAMBDAS / "requirements.txt"
SOURCES = ("simsearch", "handlers")  # packages under lambdas/ that the functions import
CACHE = ROOT / ".cache" / "bundles"
MODELS = ROOT / "build" / "models"

# Every handler path lives here, so a test can import each one and infra never types it twice.
INGEST_HANDLER = "handlers.ingest.handler"
QUERY_HANDLER = "handlers.query.handler"
BOOTSTRAP_HANDLER = "handlers.index_bootstrap.handler"
BACKFILL_HANDLER = "handlers.backfill.handler"
REINDEX_HANDLER = "handlers.reindex.handler"
HANDLERS = (INGEST_HANDLER, QUERY_HANDLER, BOOTSTRAP_HANDLER, BACKFILL_HANDLER, REINDEX_HANDLER)

BUNDLED_MODEL = "embedding_model"  # not "model": that name is the converter package in this repository
LAMBDA_MODEL_DIR = f"/var/task/{BUNDLED_MODEL}"  # where Lambda unpacks the bundle

UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024  # Lambda: function code plus layers, unzipped
LAMBDA_PYTHON = "3.12"
PIP_TARGET = (
    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
    "--only-binary=:all:", "--python-version", LAMBDA_PYTHON, "--implementation", "cp",
)  # fmt: skip

# (glob relative to the installed wheels, why the functions never need it). Sizes: onnxruntime 1.32.0,
# numpy 2.4.6, opensearch-py 3.2.0 wheels for cp312 manylinux x86_64.
TRIMMED: tuple[tuple[str, str], ...] = (
    ("onnxruntime/capi/libonnxruntime.so.*", "C API library (35 MB): the Python binding links ORT itself"),
    ("onnxruntime/transformers", "transformer graph optimiser, an offline tool (5.6 MB)"),
    ("onnxruntime/quantization", "quantisation tooling, used by the converter only (2.0 MB)"),
    ("onnxruntime/tools", "model conversion and profiling tools (1.7 MB)"),
    ("onnxruntime/backend", "the ONNX backend-test API; imports the onnx package, which is not installed"),
    ("onnxruntime/datasets", "sample models"),
    ("grpc", "gRPC transport of opensearch-py (19 MB); the adapters use its HTTP client"),
    ("grpcio-*.dist-info", "metadata of the removed gRPC package"),
    ("opensearch", "opensearch-protobufs, the message types of that gRPC transport"),
    ("opensearch_protobufs-*.dist-info", "metadata of the removed protobufs package"),
    ("google", "protobuf, needed by the gRPC transport and ORT's offline tools only"),
    ("protobuf-*.dist-info", "metadata of the removed protobuf package"),
    ("boto3", "provided by the Lambda runtime; a bundled copy would shadow it (pulled in by aws-xray-sdk)"),
    ("boto3-*.dist-info", "metadata of the runtime-provided boto3"),
    ("botocore", "provided by the Lambda runtime (~80 MB unzipped), as boto3's dependency"),
    ("botocore-*.dist-info", "metadata of the runtime-provided botocore"),
    ("s3transfer", "provided by the Lambda runtime, as boto3's dependency"),
    ("s3transfer-*.dist-info", "metadata of the runtime-provided s3transfer"),
    ("**/tests", "test suites of the wheels (numpy's are 17 MB)"),
    ("bin", "console scripts for the build machine"),
    ("**/__pycache__", "bytecode compiled for the build machine's Python (Lambda's is added: build_bundle)"),
)
_UNCOPIED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
_KEPT_BUNDLES = 4  # older final bundles are pruned; the trimmed wheels they share stay cached


@dataclass(frozen=True)
class Bundle:
    """A built code directory and the hash of its inputs, which is also its CDK asset hash."""

    path: Path
    digest: str

    @property
    def unzipped_bytes(self) -> int:
        return sum(path.stat().st_size for path in _files(self.path))


def resolve_model(config: DeploymentConfig, *, models: Path = MODELS) -> Path:
    """The model directory: ``config.model_dir`` as given, else ``config.model`` converted (or reused) by
    ``python -m model.build``.

    ResNet50's checkpoint is ``config.weights`` when given, else torch's cached copy, ours, or a verified
    download (``model.checkpoint_cache``). The converter's output, download progress included, goes on to
    stderr as it comes, and the CDK CLI shows it.

    Raises:
        ConfigError: the converter failed (its reason included, with the ways round a failed download).
    """
    if config.model_dir:
        model_dir = Path(config.model_dir).expanduser().resolve()
        ModelManifest.load(model_dir)  # a ConfigError naming the directory when there is no model in it
        return model_dir
    out = models / config.model
    command = [sys.executable, "-m", "model.build", "--arch", config.model, "--out", str(out)]
    if config.weights:
        command += ["--weights", str(Path(config.weights).expanduser().resolve())]
    if config.weights_tag:
        command += ["--weights-tag", config.weights_tag]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LAMBDAS), str(ROOT)])}
    status, output = _run_showing_output(command, env)
    if status != 0:
        lines = [line for line in re.split(r"[\r\n]+", output) if line.strip()]
        reason = lines[-1] if lines else f"exit status {status}"
        instead = ""
        if config.model == "resnet50" and not config.weights:
            instead = " Or deploy MobileNetV2, whose weights need no download: -c model=mobilenet_v2."
        raise ConfigError(f"`{' '.join(command[1:])}` failed: {reason.rstrip('.')}.{instead}")
    return out


def _run_showing_output(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``command``, passing its output to stderr as it arrives and keeping it for an error message."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    kept: list[str] = []
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as process:
        stream = process.stdout
        assert stream is not None  # stdout=PIPE
        while chunk := os.read(stream.fileno(), 1 << 16):
            text = decoder.decode(chunk)
            sys.stderr.write(text)
            sys.stderr.flush()
            kept.append(text)
    return process.returncode, "".join(kept)


def check_size(bundle: Bundle, manifest: ModelManifest) -> None:
    """Print the bundle's unzipped size, and stop synth when Lambda would refuse the bundle at deploy.

    Raises:
        ConfigError: the bundle is over Lambda's 250 MiB unzipped limit.
    """
    size, limit = bundle.unzipped_bytes / 2**20, UNZIPPED_LIMIT_BYTES / 2**20
    print(
        f"Lambda bundle: {size:.1f} MiB unzipped of Lambda's {limit:.0f} MiB ({manifest.model_id})",
        file=sys.stderr,
    )
    if bundle.unzipped_bytes > UNZIPPED_LIMIT_BYTES:
        raise ConfigError(
            f"the Lambda bundle with {manifest.model_id} is {size:.1f} MiB unzipped; Lambda allows "
            f"{limit:.0f} MiB: deploy a smaller model (-c model=mobilenet_v2)"
        )


def lambda_python() -> str | None:
    """An interpreter of Lambda's Python version that runs here: ``SIMSEARCH_PYTHON312``, else
    ``python3.12`` on the PATH (pyenv's shim fails unless that version is selected), else pyenv's."""
    pattern = os.path.expanduser(f"~/.pyenv/versions/{LAMBDA_PYTHON}*/bin/python{LAMBDA_PYTHON}")
    candidates = [os.environ.get("SIMSEARCH_PYTHON312", ""), shutil.which(f"python{LAMBDA_PYTHON}") or ""]
    candidates += sorted(glob.glob(pattern))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == LAMBDA_PYTHON:
            return candidate
    return None


def build_bundle(
    *, model_dir: Path, requirements: Path = REQUIREMENTS, cache: Path = CACHE, bytecode: bool = True
) -> Bundle:
    """The code of every function: trimmed wheels, our packages and the model, cached by input hash;
    with bytecode when ``bytecode`` and an interpreter of Lambda's Python is at hand."""
    manifest = ModelManifest.load(model_dir)
    wheels = _trimmed_wheels(requirements, cache)
    compiler = lambda_python() if bytecode else None
    digest = _digest(
        [wheels.name.encode(), repr((SOURCES, BUNDLED_MODEL, compiler is not None)).encode()]
        + [chunk for package in SOURCES for chunk in _tree_chunks(LAMBDAS / package)]
        + [chunk for name in (MANIFEST_FILE, manifest.onnx_file) for chunk in _file_chunks(model_dir / name)]
    )
    target = cache / f"lambda-{digest[:16]}"
    if not target.is_dir():
        with _staging(cache) as staging:
            shutil.copytree(wheels, staging, copy_function=_link_or_copy, dirs_exist_ok=True)
            for package in SOURCES:
                shutil.copytree(LAMBDAS / package, staging / package, ignore=_UNCOPIED)
            (staging / BUNDLED_MODEL).mkdir()
            for name in (MANIFEST_FILE, manifest.onnx_file):
                _link_or_copy(model_dir / name, staging / BUNDLED_MODEL / name)
            if compiler is not None:
                _compile(staging, compiler)
            _publish(staging, target)
    target.touch()  # the mtime marks it as recently used for pruning
    _prune(cache)
    return Bundle(path=target, digest=digest)


def _compile(staging: Path, python: str) -> None:
    """Bytecode for every module, by Lambda's Python; none at all if it would not fit in Lambda's limit.

    A module that does not compile (none that the functions import) is left as source: compileall's
    status is not an error here.
    """
    command = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    subprocess.run([*command, str(staging)], capture_output=True, check=False)
    if sum(path.stat().st_size for path in _files(staging)) > UNZIPPED_LIMIT_BYTES:
        for cache_dir in sorted(staging.rglob("__pycache__"), reverse=True):
            shutil.rmtree(cache_dir)


def lambda_code(bundle: Bundle) -> lambda_.Code:
    """The bundle as a CDK asset whose hash is the input hash: the CDK needn't re-hash 200 MB per synth."""
    return lambda_.Code.from_asset(
        str(bundle.path), asset_hash=bundle.digest, asset_hash_type=AssetHashType.CUSTOM
    )


def _trimmed_wheels(requirements: Path, cache: Path) -> Path:
    """``pip install`` for Lambda's platform into a cached directory, then trimmed per ``TRIMMED``."""
    digest = _digest([requirements.read_bytes(), repr((PIP_TARGET, TRIMMED)).encode()])
    target = cache / f"wheels-{digest[:16]}"
    if target.is_dir():
        return target
    with _staging(cache) as staging:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
        ]
        command += [*PIP_TARGET, "--target", str(staging), "-r", str(requirements)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ConfigError(
                f"pip could not install {requirements} for Lambda: {result.stderr.strip()[-2000:]}"
            )
        for pattern, _why in TRIMMED:
            for path in sorted(staging.glob(pattern), reverse=True):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        _publish(staging, target)
    return target


@contextmanager
def _staging(cache: Path) -> Iterator[Path]:
    """A fresh directory beside the cache entries, removed unless it was published."""
    cache.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _publish(staging: Path, target: Path) -> None:
    """Rename into place; if a concurrent synth published the same inputs first, keep theirs."""
    try:
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise


def _prune(cache: Path) -> None:
    bundles = sorted(cache.glob("lambda-*"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in bundles[_KEPT_BUNDLES:]:
        shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(source: str | Path, destination: str | Path) -> None:
    """Hard-link cached files into a bundle (no second copy of 200 MB); copy across file systems."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _files(root: Path) -> Iterator[Path]:
    return (path for path in sorted(root.rglob("*")) if path.is_file())


def _tree_chunks(root: Path) -> Iterator[bytes]:
    for path in _files(root):
        if "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield from _file_chunks(path, name=str(path.relative_to(root.parent)))


def _file_chunks(path: Path, *, name: str | None = None) -> Iterator[bytes]:
    yield (name or path.name).encode() + b"\0"
    with path.open("rb") as file:
        yield hashlib.file_digest(file, "sha256").digest()


def _digest(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()
