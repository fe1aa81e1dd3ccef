"""Images in, unit-length embeddings out, with ONNX Runtime on the CPU.

Services depend on the ``Embedder`` protocol; ``OnnxEmbedder`` is the implementation the composition
roots build once per process (``@cache``): loading a session and its warm-up run cost far more than
one request, so a Lambda container pays them at cold start only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    RuntimeException,
)
from PIL import Image

from simsearch.errors import ConfigError, InvalidRequestError, InvalidVectorError
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits, Tensor, decode_image, to_tensor

Embeddings = npt.NDArray[np.float32]
"""Shape ``(n, dim)``, one L2-normalised row per image, in input order."""

LAMBDA_MB_PER_VCPU = 1769
"""Lambda allocates CPU in proportion to memory: 1,769 MB buys the equivalent of one vCPU."""

LAMBDA_MAX_VCPUS = 6
"""The most vCPUs a Lambda function gets (at 10,240 MB)."""

_ORT_ERRORS = (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile, RuntimeException)

_T = TypeVar("_T")


class Embedder(Protocol):
    """What a service needs from an embedding model; tests may pass any object of this shape."""

    @property
    def dim(self) -> int:
        """The length of every embedding; the index is created with it."""
        ...

    @property
    def model_id(self) -> str:
        """Names the model, and so the index its vectors may be compared in."""
        ...

    def embed(self, images: Sequence[Image.Image]) -> Embeddings:
        """One unit-length row per image, in order."""
        ...

    def close(self) -> None: ...


def ort_threads(configured: int, *, lambda_memory_mb: int | None, cpu_count: int | None) -> int:
    """How many intra-op threads ONNX Runtime should use.

    On Lambda: the whole number of vCPUs nearest to what the memory buys (1..6), never more than the
    visible cores. ``os.cpu_count()`` misleads there: below 3,008 MB a function sees 2 cores but gets
    ``memory / 1769`` of a vCPU in time, and threads that outnumber the vCPUs only wait on each other.

    Args:
        configured: ``Settings.ort_threads``; a positive value wins, 0 means "derive it".
        lambda_memory_mb: ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, read by the handler; None off Lambda.
        cpu_count: the cores this process sees (``os.cpu_count()``); None when unknown.
    """
    if configured < 0:
        raise ConfigError(f"ort_threads is {configured}; use a positive count, or 0 to derive it")
    if configured > 0:
        return configured
    cores = cpu_count or 1
    if lambda_memory_mb is None:
        return cores
    vcpus = round(lambda_memory_mb / LAMBDA_MB_PER_VCPU)
    return max(1, min(vcpus, LAMBDA_MAX_VCPUS, cores))


class OnnxEmbedder:
    """An ONNX Runtime session for one model, with the manifest that says how to feed it.

    ``threads`` serves twice: ONNX Runtime's intra-op pool, and the pool that decodes and preprocesses
    the images of a batch in parallel (Pillow releases the GIL); within one call they take turns.
    """

    def __init__(self, *, session: ort.InferenceSession, manifest: ModelManifest, threads: int) -> None:
        self.manifest = manifest
        self._session = session
        self._pool = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess") if threads > 1 else None
        )

    @classmethod
    def load(cls, model_dir: Path, *, threads: int) -> OnnxEmbedder:
        """Load ``model_dir``'s manifest and model, check they agree, and run the model once.

        The warm-up run makes ONNX Runtime allocate its buffers now, not during the first request,
        and refuses a model that loads but cannot run.

        Raises:
            ConfigError: a missing or malformed manifest or model, a model whose inputs or outputs
                disagree with its manifest, or ``threads`` < 1.
        """
        if threads < 1:
            raise ConfigError(f"threads is {threads}; the embedder needs at least 1")
        manifest = ModelManifest.load(model_dir)
        session = _session(model_dir / manifest.onnx_file, threads=threads)
        _check_signature(session, manifest)
        embedder = cls(session=session, manifest=manifest, threads=threads)
        embedder._warm_up()
        return embedder

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    def embed(self, images: Sequence[Image.Image]) -> Embeddings:
        """Preprocess (in parallel for batches) and embed already decoded images."""
        return self._embed_each(self._tensor, images)

    def embed_images(self, encoded: Sequence[bytes], *, limits: ImageLimits) -> Embeddings:
        """Decode, preprocess and embed encoded images; the first bad one raises its typed error.

        For a batch in which one bad image must not fail the others, decode each with
        ``decode_image`` and pass the good ones to ``embed``.
        """
        return self._embed_each(lambda data: self._decoded_tensor(data, limits), encoded)

    def close(self) -> None:
        """Stop the preprocessing threads; the session is freed with the object."""
        if self._pool is not None:
            self._pool.shutdown()

    def embed_tensors(self, batch: Tensor) -> Embeddings:
        """Embed an NCHW float32 batch already prepared with ``preprocess.to_batch`` for this manifest.

        Raises:
            InvalidRequestError: the batch is not float32 of shape ``(n, 3, input_size, input_size)``.
            InvalidVectorError: the model produced a non-finite or all-zero embedding.
        """
        self._check_batch(batch)
        if batch.shape[0] == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return _unit_rows(self._run(np.ascontiguousarray(batch)))

    def _tensor(self, image: Image.Image) -> Tensor:
        return to_tensor(image, self.manifest)

    def _decoded_tensor(self, data: bytes, limits: ImageLimits) -> Tensor:
        return to_tensor(decode_image(data, limits=limits).rgb, self.manifest)

    def _embed_each(self, prepare: Callable[[_T], Tensor], items: Sequence[_T]) -> Embeddings:
        """Prepare every item (on the pool when there are several), then embed them as one batch."""
        if not items:
            return np.empty((0, self.dim), dtype=np.float32)
        if self._pool is None or len(items) == 1:
            tensors = [prepare(item) for item in items]
        else:
            tensors = list(self._pool.map(prepare, items))
        return self.embed_tensors(np.stack(tensors))

    def _check_batch(self, batch: Tensor) -> None:
        size = self.manifest.input_size
        shape, dtype = getattr(batch, "shape", None), getattr(batch, "dtype", None)
        if dtype != np.float32 or shape is None or tuple(shape[1:]) != (3, size, size):
            raise InvalidRequestError(
                f"the batch is {dtype} of shape {shape}; "
                f"model {self.model_id} takes float32 of shape (n, 3, {size}, {size})"
            )

    def _run(self, batch: Tensor) -> Embeddings:
        (output,) = self._session.run([self.manifest.output_name], {self.manifest.input_name: batch})
        return np.asarray(output, dtype=np.float32)

    def _warm_up(self) -> None:
        size = self.manifest.input_size
        try:
            self._run(np.zeros((1, 3, size, size), dtype=np.float32))
        except _ORT_ERRORS as error:
            raise ConfigError(f"model {self.model_id} loads but cannot run: {error}") from error


def _session(path: Path, *, threads: int) -> ort.InferenceSession:
    if not path.is_file():
        raise ConfigError(f"no model file at {path}; the manifest beside it names it")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one sequential graph: inter-op threads would only idle
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except _ORT_ERRORS as error:
        raise ConfigError(f"ONNX Runtime cannot load {path}: {error}") from error


def _check_signature(session: ort.InferenceSession, manifest: ModelManifest) -> None:
    """The model must take ``(n, 3, S, S)`` as ``input_name`` and give ``(n, dim)`` as ``output_name``."""
    inputs = {node.name: node.shape for node in session.get_inputs()}
    outputs = {node.name: node.shape for node in session.get_outputs()}
    expected_input = [None, 3, manifest.input_size, manifest.input_size]
    expected_output = [None, manifest.embedding_dim]
    problems = [
        *_shape_problems("input", manifest.input_name, inputs, expected_input),
        *_shape_problems("output", manifest.output_name, outputs, expected_output),
    ]
    if problems:
        raise ConfigError(f"model {manifest.model_id} disagrees with its manifest: " + "; ".join(problems))


def _shape_problems(
    kind: str, name: str, shapes: dict[str, list[int | str | None]], expected: list[int | None]
) -> list[str]:
    """``None`` in ``expected`` is the batch axis; a symbolic dimension in the model matches anything."""
    if name not in shapes:
        return [f"the manifest's {kind} {name!r} is not among the model's {kind}s {sorted(shapes)}"]
    shape = shapes[name]
    matches = len(shape) == len(expected) and all(
        want is None or not isinstance(have, int) or have == want
        for have, want in zip(shape, expected, strict=True)
    )
    return [] if matches else [f"{kind} {name!r} has shape {shape}; the manifest implies {expected}"]


def _unit_rows(raw: Embeddings) -> Embeddings:
    """Scale rows to length 1: the index uses inner product, which ranks like cosine only for unit vectors.

    Our converter already ends the graph with an L2 normalisation; doing it again costs microseconds
    and keeps the contract for any model the manifest describes.
    """
    norms: Embeddings = np.linalg.norm(raw, axis=1)
    usable = np.isfinite(norms) & (norms > 0)  # a NaN or infinity anywhere in a row makes its norm one
    if not usable.all():
        bad = int(np.flatnonzero(~usable)[0])
        raise InvalidVectorError(
            f"the model gave a zero or non-finite embedding for image {bad} of the batch"
        )
    unit: Embeddings = (raw / norms[:, np.newaxis]).astype(np.float32)
    return unit
