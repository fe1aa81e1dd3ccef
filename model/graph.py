"""Emit an ONNX graph with ``onnx.helper``, one node at a time, in a reproducible order.

Every node and initialiser is named after the checkpoint parameter it comes from, and the model is
serialised deterministically, so the same weights always give the same bytes (and the same sha256 in the
manifest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR that introduced opset 17: runtimes old enough to lack newer IRs still load it
PRODUCER = "simsearch-model"

Activation = Literal["relu", "relu6"]
Pooling = Literal["avg", "gem"]
TestTimeAugmentation = Literal["none", "hflip"]

GEM_P = 3.0
"""The generalised-mean exponent: 1 is average pooling, large values approach max pooling; 3 is the
value Radenović et al. (TPAMI 2018) found best for retrieval with off-the-shelf CNN features."""
_GEM_EPSILON = 1e-6  # keeps Pow's base positive, as their implementation clamps it

# Node names of the embedding head, which quantisation leaves in float32.
HEAD_NODES = ("pool", "features", "l2norm", "l2norm.clamped")

# F.normalize's default: keeps an all-zero embedding at zero instead of dividing by zero.
_NORM_EPSILON = 1e-12


class GraphBuilder:
    """Collects nodes and initialisers in emission order; ``model()`` wraps them into an opset-17 model."""

    def __init__(self, *, input_name: str, channels: int, size: int) -> None:
        self.input_name = input_name
        self._input_shape = ("batch", channels, size, size)
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: dict[str, onnx.TensorProto] = {}

    def constant(self, name: str, value: npt.NDArray[Any]) -> str:
        """Add an initialiser once; asking again for the same name reuses it."""
        if name not in self._initializers:
            self._initializers[name] = numpy_helper.from_array(np.ascontiguousarray(value), name=name)
        return name

    def node(self, op: str, inputs: Sequence[str], *, name: str, **attributes: Any) -> str:
        """Append one node whose single output is named like the node, and return that name."""
        self._nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attributes))
        return name

    def conv(
        self,
        x: str,
        *,
        name: str,
        weight: npt.NDArray[np.float32],
        bias: npt.NDArray[np.float32],
        stride: int,
        groups: int,
        same_upper: bool = False,
    ) -> str:
        """A square convolution padded by ``(k - 1) // 2`` on every side, as torchvision's layers are.

        ``same_upper`` pads like TensorFlow's ``SAME`` instead (any odd pixel goes after, not before),
        which networks converted from TensorFlow checkpoints, such as EfficientNet-Lite, expect.
        """
        kernel = weight.shape[-1]
        pad = (kernel - 1) // 2
        padding: dict[str, Any] = {"auto_pad": "SAME_UPPER"} if same_upper else {"pads": [pad] * 4}
        return self.node(
            "Conv",
            [x, self.constant(f"{name}.weight", weight), self.constant(f"{name}.bias", bias)],
            name=name,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            group=groups,
            **padding,
        )

    def activation(self, x: str, kind: Activation, *, name: str) -> str:
        if kind == "relu":
            return self.node("Relu", [x], name=name)
        low = self.constant("relu6.min", np.array(0.0, dtype=np.float32))
        high = self.constant("relu6.max", np.array(6.0, dtype=np.float32))
        return self.node("Clip", [x, low, high], name=name)

    def max_pool(self, x: str, *, name: str, kernel: int, stride: int) -> str:
        pad = (kernel - 1) // 2
        return self.node(
            "MaxPool", [x], name=name, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4
        )

    def with_mirror_images(self, x: str) -> str:
        """``(N, C, H, W)`` → ``(2N, C, H, W)``: the batch, then every image flipped left to right."""
        flipped = self.node(
            "Slice",
            [
                x,
                self.constant("hflip.starts", np.array([-1], dtype=np.int64)),
                self.constant("hflip.ends", np.array([np.iinfo(np.int64).min], dtype=np.int64)),
                self.constant("hflip.axes", np.array([3], dtype=np.int64)),
                self.constant("hflip.steps", np.array([-1], dtype=np.int64)),
            ],
            name="hflip",
        )
        return self.node("Concat", [x, flipped], name="hflip.batch", axis=0)

    def embedding_head(
        self,
        x: str,
        *,
        output_name: str,
        pooling: Pooling = "avg",
        tta: TestTimeAugmentation = "none",
        channels: int = 0,
    ) -> str:
        """Global pooling, flattening, L2 normalisation: the index ranks unit vectors by cosine.

        With ``tta="hflip"`` the trunk saw each image and its mirror (``with_mirror_images``); their
        pooled features are summed before normalising, so the embedding is invariant to the flip.
        """
        pool, features, norm, _ = HEAD_NODES
        pooled = self.node("Flatten", [self._global_pool(x, pooling, name=pool)], name=features, axis=1)
        if tta == "hflip":
            shape = self.constant("hflip.shape", np.array([2, -1, channels], dtype=np.int64))
            pairs = self.node("Reshape", [pooled, shape], name="hflip.pairs")
            axis = self.constant("hflip.axis", np.array([0], dtype=np.int64))
            pooled = self.node("ReduceSum", [pairs, axis], name="hflip.sum", keepdims=0)
        return self.l2_normalised(pooled, name=norm, output_name=output_name)

    def l2_normalised(self, x: str, *, name: str, output_name: str) -> str:
        """Each row of ``(N, D)`` divided by its L2 norm (at least ``_NORM_EPSILON``), as ``F.normalize``."""
        length = self.node("ReduceL2", [x], name=name, axes=[1], keepdims=1)
        epsilon = self.constant(f"{name}.epsilon", np.array(_NORM_EPSILON, dtype=np.float32))
        clamped = self.node("Max", [length, epsilon], name=f"{name}.clamped")
        return self.node("Div", [x, clamped], name=output_name)

    def _global_pool(self, x: str, pooling: Pooling, *, name: str) -> str:
        """Average pooling, or GeM: ``mean(max(x, ε)^p)^(1/p)`` over each channel's spatial positions."""
        if pooling == "avg":
            return self.node("GlobalAveragePool", [x], name=name)
        low = self.constant("gem.epsilon", np.array(_GEM_EPSILON, dtype=np.float32))
        p = self.constant("gem.p", np.array(GEM_P, dtype=np.float32))
        inverse = self.constant("gem.inverse_p", np.array(1.0 / GEM_P, dtype=np.float32))
        powered = self.node("Pow", [self.node("Clip", [x, low], name="gem.clamp"), p], name="gem.pow")
        mean = self.node("GlobalAveragePool", [powered], name="gem.mean")
        return self.node("Pow", [mean, inverse], name=name)

    def appended_to(self, base: onnx.ModelProto, *, output: str, output_dim: int) -> onnx.ModelProto:
        """``base`` followed by this builder's nodes, which read base's output as ``self.input_name``.

        ``output`` becomes the single output; base's metadata (opset, IR, producer) is kept.
        """
        (base_output,) = base.graph.output
        nodes = [_renamed_output(node, base_output.name, self.input_name) for node in base.graph.node]
        graph = helper.make_graph(
            nodes + self._nodes,
            base.graph.name,
            list(base.graph.input),
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, ("batch", output_dim))],
            initializer=list(base.graph.initializer) + list(self._initializers.values()),
        )
        model = onnx.ModelProto()
        model.CopyFrom(base)
        model.graph.CopyFrom(graph)
        onnx.checker.check_model(model, full_check=True)
        return model

    def model(
        self, output: str, *, output_dim: int, graph_name: str, producer_version: str
    ) -> onnx.ModelProto:
        """Wrap the nodes into a checked model with a dynamic batch axis."""
        graph = helper.make_graph(
            self._nodes,
            graph_name,
            [helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, self._input_shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, ("batch", output_dim))],
            initializer=list(self._initializers.values()),
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name=PRODUCER,
            producer_version=producer_version,
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def _renamed_output(node: onnx.NodeProto, old: str, new: str) -> onnx.NodeProto:
    renamed = onnx.NodeProto()
    renamed.CopyFrom(node)
    renamed.output[:] = [new if name == old else name for name in node.output]
    if renamed.name == old:  # nodes here are named like their output, and names must stay unique
        renamed.name = new
    return renamed


def to_bytes(model: onnx.ModelProto) -> bytes:
    """Serialise with deterministic map ordering, so equal models are equal bytes."""
    serialised: bytes = model.SerializeToString(deterministic=True)
    return serialised
