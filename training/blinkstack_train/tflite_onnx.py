"""A small TFLite -> ONNX converter for the convolutional MediaPipe models the detector serves.

The face landmark model and BlazeFace ship only as `.tflite` files inside the `mediapipe` wheel. The public
converters either need TensorFlow (tf2onnx) or fail on these files (tflite2onnx 0.4.1: an index error in its
layout pass), and the models use a handful of operators. So this module reads the flatbuffer with the `tflite`
package (a pure-Python schema) and writes the equivalent ONNX graph:

- activations are kept NCHW inside the graph: the NHWC input is transposed once, and 4-D outputs are
  transposed back, so the ONNX model takes and returns exactly the tensors the TFLite model does;
- float16 weights behind DEQUANTIZE ops are folded to float32 constants;
- TFLite's SAME padding (more padding after than before when the total is odd) is written as explicit pads;
- the batch axis is dynamic (Triton's dynamic batching, several faces in one call).

Unsupported operators raise `UnsupportedModel` naming them: a new model version that needs more fails loudly at
conversion, and the parity check against the TFLite runtime (`landmark_models.py`) catches anything converted
wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import tflite
from flatbuffers import flexbuffers
from onnx import TensorProto, helper, numpy_helper

OPSET = 18  # ReduceMax/ReduceMin/ReduceL2 take their axes as an input from 18 on
_NHWC_TO_NCHW = (0, 3, 1, 2)
_NCHW_TO_NHWC = (0, 2, 3, 1)
_AXIS_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}
_DTYPES = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
}
_OPERATOR_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


class UnsupportedModel(ValueError):
    """The model uses an operator or layout this converter does not handle."""


@dataclass
class _Graph:
    model: tflite.Model
    subgraph: tflite.SubGraph
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    constants: dict[int, np.ndarray] = field(default_factory=dict)  # tflite tensor index -> value
    names: dict[int, str] = field(default_factory=dict)  # tflite tensor index -> ONNX name of the activation
    counter: int = 0

    def tensor(self, index: int) -> tflite.Tensor:
        return self.subgraph.Tensors(index)

    def shape(self, index: int) -> list[int]:
        return [int(v) for v in self.tensor(index).ShapeAsNumpy()]

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def constant(self, value: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))  # 0-d stays 0-d
        return name

    def scalar(self, value: float, hint: str) -> str:
        return self.constant(np.array(value, np.float32), hint)

    def node(self, op: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def weights(self, index: int) -> np.ndarray:
        """A tensor that must be a constant (weights, biases, paddings, slice bounds)."""
        value = self.value(index)
        if value is None:
            raise UnsupportedModel(f"tensor {index} is an activation where a constant is expected")
        return value

    def value(self, index: int) -> np.ndarray | None:
        """A constant tensor's value (weights, biases, paddings), None for an activation."""
        if index in self.constants:
            return self.constants[index]
        tensor = self.tensor(index)
        data = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        if tensor.Type() not in _DTYPES:
            raise UnsupportedModel(f"constant tensor {tensor.Name().decode()} has TFLite type {tensor.Type()}")
        value = np.frombuffer(data.tobytes(), dtype=_DTYPES[tensor.Type()]).reshape(self.shape(index))
        self.constants[index] = value
        return value


def _padding(
    graph: _Graph, in_hw: list[int], kernel: tuple[int, int], strides: tuple[int, int], same: bool, dilation=(1, 1)
):
    if not same:
        return [0, 0, 0, 0]
    before, after = [], []
    for size, k, s, d in zip(in_hw, kernel, strides, dilation, strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after


def _activation(graph: _Graph, name: str, fused: int) -> str:
    if fused == tflite.ActivationFunctionType.NONE:
        return name
    if fused == tflite.ActivationFunctionType.RELU:
        return graph.node("Relu", [name], "relu")
    if fused == tflite.ActivationFunctionType.RELU6:
        low, high = graph.scalar(0, "zero"), graph.scalar(6, "six")
        return graph.node("Clip", [name, low, high], "relu6")
    raise UnsupportedModel(f"fused activation {fused}")


def _options(op: tflite.Operator, cls):
    table = op.BuiltinOptions()
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _conv(graph: _Graph, op: tflite.Operator, depthwise: bool) -> str:
    x, w, b = (op.Inputs(i) for i in range(3))
    weights = graph.weights(w).astype(np.float32)
    options = _options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
    in_shape = graph.shape(x)  # NHWC
    strides = (options.StrideH(), options.StrideW())
    dilation = (options.DilationHFactor(), options.DilationWFactor())
    kernel = weights.shape[1:3]
    pads = _padding(graph, in_shape[1:3], kernel, strides, options.Padding() == tflite.Padding.SAME, dilation)
    if depthwise:  # [1, KH, KW, C*M] -> [C*M, 1, KH, KW], one group per input channel
        onnx_w, group = weights.transpose(3, 0, 1, 2), in_shape[3]
    else:  # [O, KH, KW, I] -> [O, I, KH, KW]
        onnx_w, group = weights.transpose(0, 3, 1, 2), 1
    inputs = [graph.names[x], graph.constant(onnx_w, "w")]
    bias = graph.value(b) if b >= 0 else None
    if bias is not None:
        inputs.append(graph.constant(bias.astype(np.float32), "b"))
    out = graph.node(
        "Conv", inputs, "conv", kernel_shape=list(kernel), strides=list(strides), dilations=list(dilation),
        pads=pads, group=group,
    )  # fmt: skip
    return _activation(graph, out, options.FusedActivationFunction())


def _pool(graph: _Graph, op: tflite.Operator, onnx_op: str) -> str:
    options = _options(op, tflite.Pool2DOptions)
    x = op.Inputs(0)
    kernel, strides = (options.FilterHeight(), options.FilterWidth()), (options.StrideH(), options.StrideW())
    pads = _padding(graph, graph.shape(x)[1:3], kernel, strides, options.Padding() == tflite.Padding.SAME)
    out = graph.node(onnx_op, [graph.names[x]], "pool", kernel_shape=list(kernel), strides=list(strides), pads=pads)
    return _activation(graph, out, options.FusedActivationFunction())


def _broadcastable(graph: _Graph, value: np.ndarray, rank: int) -> str:
    """A constant operand of an elementwise op on an NCHW activation, laid out to broadcast the same way."""
    value = value.astype(np.float32)
    if rank == 4 and value.ndim >= 1:
        full = value.reshape((1,) * (4 - value.ndim) + value.shape) if value.ndim < 4 else value
        value = full.transpose(_NHWC_TO_NCHW)
    return graph.constant(value, "k")


def _binary(graph: _Graph, op: tflite.Operator, onnx_op: str, options_class) -> str:
    """ADD / MUL of two activations, or of an activation and a constant."""
    a, b = op.Inputs(0), op.Inputs(1)
    rank = len(graph.shape(op.Outputs(0)))
    operands = [
        graph.names[i] if graph.value(i) is None else _broadcastable(graph, graph.weights(i), rank) for i in (a, b)
    ]
    out = graph.node(onnx_op, operands, onnx_op.lower())
    return _activation(graph, out, _options(op, options_class).FusedActivationFunction())


def _prelu(graph: _Graph, op: tflite.Operator) -> str:
    """PReLU written as slope * x + (1 - slope) * relu(x), which is the same function.

    ONNX Runtime's PRelu kernel is not vectorised for a per-channel slope and cannot stay in its blocked (NCHWc)
    convolution layout: on the face landmark model it took 2.7 of 4.0 ms. Relu, Mul and Add do both, and the
    model then runs in 1.5 ms (one thread), within 1e-4 of the PRelu graph.
    """
    x, alpha = op.Inputs(0), op.Inputs(1)
    slope = graph.weights(alpha).astype(np.float32)
    # TFLite's alpha broadcasts over NHWC ([C], [1, 1, C] or [H, W, C]); ONNX's over NCHW.
    slope = slope.reshape((1,) * (3 - slope.ndim) + slope.shape).transpose(2, 0, 1)
    source = graph.names[x]
    linear = graph.node("Mul", [source, graph.constant(slope, "slope")], "prelu_linear")
    rectified = graph.node("Relu", [source], "prelu_relu")
    rest = graph.node("Mul", [rectified, graph.constant(1.0 - slope, "one_minus_slope")], "prelu_rest")
    return graph.node("Add", [linear, rest], "prelu")


def _pad(graph: _Graph, op: tflite.Operator) -> str:
    x, paddings = op.Inputs(0), graph.weights(op.Inputs(1))
    nchw = paddings[list(_NHWC_TO_NCHW)]
    pads = np.concatenate([nchw[:, 0], nchw[:, 1]]).astype(np.int64)
    return graph.node("Pad", [graph.names[x], graph.constant(pads, "pads")], "pad", mode="constant")


def _reshape(graph: _Graph, op: tflite.Operator) -> str:
    x, out = op.Inputs(0), op.Outputs(0)
    source = graph.names[x]
    if len(graph.shape(x)) == 4:  # back to TFLite's element order before flattening
        source = graph.node("Transpose", [source], "nhwc", perm=list(_NCHW_TO_NHWC))
    shape = np.array([-1, *graph.shape(out)[1:]], dtype=np.int64)
    reshaped = graph.node("Reshape", [source, graph.constant(shape, "shape")], "reshape")
    if len(shape) == 4:
        reshaped = graph.node("Transpose", [reshaped], "nchw", perm=list(_NHWC_TO_NCHW))
    return reshaped


def _concat(graph: _Graph, op: tflite.Operator) -> str:
    options = _options(op, tflite.ConcatenationOptions)
    inputs = [op.Inputs(i) for i in range(op.InputsLength())]
    rank = len(graph.shape(inputs[0]))
    axis = options.Axis() % rank
    if rank == 4:
        axis = _AXIS_NHWC_TO_NCHW[axis]
    out = graph.node("Concat", [graph.names[i] for i in inputs], "concat", axis=axis)
    return _activation(graph, out, options.FusedActivationFunction())


def _dequantize(graph: _Graph, op: tflite.Operator) -> str | None:
    value = graph.value(op.Inputs(0))
    if value is None:
        raise UnsupportedModel("DEQUANTIZE of an activation (a quantised model)")
    graph.constants[op.Outputs(0)] = value.astype(np.float32)
    return None


def _identity_slice(graph: _Graph, op: tflite.Operator) -> str:
    """STRIDED_SLICE that keeps the whole tensor (the attention model ends its mesh output with one)."""
    x = op.Inputs(0)
    begin, end, strides = (graph.weights(op.Inputs(i)) for i in (1, 2, 3))
    options = _options(op, tflite.StridedSliceOptions)
    masks = (options.BeginMask(), options.EndMask(), options.EllipsisMask(), options.NewAxisMask())
    if begin.any() or list(end) != graph.shape(x) or (strides != 1).any() or any(masks) or options.ShrinkAxisMask():
        raise UnsupportedModel("STRIDED_SLICE other than the whole tensor")
    return graph.node("Identity", [graph.names[x]], "slice")


# MediaPipe's custom operators (mediapipe/util/tflite/operations, version 2), written with ONNX operators. The
# attention face landmark model uses them to crop its eye and lip feature maps around landmarks it predicted
# first, and to map the refined points back. Their options come as a flexbuffer map.
def _custom_options(op: tflite.Operator) -> dict:
    raw = op.CustomOptionsAsNumpy()
    return {} if isinstance(raw, int) else flexbuffers.Loads(raw.tobytes())


def _check_version(graph: _Graph, op: tflite.Operator, name: str) -> None:
    version = graph.model.OperatorCodes(op.OpcodeIndex()).Version()
    if version != 2:
        raise UnsupportedModel(f"{name} version {version} (only version 2 is converted)")


def _columns(graph: _Graph, matrix: str) -> tuple[str, str, str]:
    """A [N, 4, 4] transform -> its 2x2 linear part as [N, 2, 2] transposed (for row-vector points) and its
    translation [N, 1, 2]."""
    linear = graph.node(
        "Slice", [matrix, *(graph.constant(np.array(v, np.int64), "i") for v in ([0, 0], [2, 2], [1, 2]))], "linear"
    )
    translation = graph.node(
        "Slice", [matrix, *(graph.constant(np.array(v, np.int64), "i") for v in ([0, 3], [2, 4], [1, 2]))], "shift"
    )
    transposed = graph.node("Transpose", [linear], "linear_t", perm=[0, 2, 1])
    shift = graph.node("Reshape", [translation, graph.constant(np.array([-1, 1, 2], np.int64), "shape")], "shift")
    return linear, transposed, shift


def _landmarks_to_transform_matrix(graph: _Graph, op: tflite.Operator) -> str:
    """Landmarks [N, K, 3] -> the [N, 4, 4] transform from an output_width x output_height crop to the landmarks'
    space: centred on the bounding box of `subset_idxs` in the frame rotated so that left -> right is level,
    scaled by scale_x/scale_y times that box."""
    _check_version(graph, op, "Landmarks2TransformMatrix")
    opts = _custom_options(op)
    if opts.get("target_rotation_radians", 0.0) != 0.0:
        raise UnsupportedModel("Landmarks2TransformMatrix with a target rotation")
    landmarks = graph.names[op.Inputs(0)]
    xy = graph.node("Slice", [landmarks, *(graph.constant(np.array(v, np.int64), "i") for v in ([0], [2], [2]))], "xy")

    def point(index: int) -> str:
        return graph.node("Gather", [xy, graph.constant(np.array(index, np.int64), "i")], "point", axis=1)

    left, right = point(opts["left_rotation_idx"]), point(opts["right_rotation_idx"])
    direction = graph.node("Sub", [right, left], "direction")  # [N, 2]
    length = graph.node("ReduceL2", [direction, graph.constant(np.array([1], np.int64), "axes")], "length", keepdims=1)
    unit = graph.node("Div", [direction, length], "unit")  # (cos t, sin t), t the angle of left -> right

    def part(vector: str, index: int) -> str:  # [N, 2] -> [N, 1]
        return graph.node(
            "Slice", [vector, *(graph.constant(np.array(v, np.int64), "i") for v in ([index], [index + 1], [1]))], "c"
        )

    cos, sin = part(unit, 0), part(unit, 1)
    neg_sin = graph.node("Neg", [sin], "neg_sin")
    # Points rotated by -t (row vectors times R(-t)^T = R(t)): x' = x cos + y sin, y' = -x sin + y cos.
    undo = graph.node("Concat", [cos, neg_sin, sin, cos], "undo", axis=1)  # rows of R(t) as [N, 4]
    undo = graph.node("Reshape", [undo, graph.constant(np.array([-1, 2, 2], np.int64), "shape")], "undo")
    subset = graph.node("Gather", [xy, graph.constant(np.array(opts["subset_idxs"], np.int64), "i")], "subset", axis=1)
    rotated = graph.node("MatMul", [subset, undo], "rotated")  # [N, K, 2]
    axes = graph.constant(np.array([1], np.int64), "axes")
    high = graph.node("ReduceMax", [rotated, axes], "high", keepdims=0)  # [N, 2]
    low = graph.node("ReduceMin", [rotated, axes], "low", keepdims=0)
    size = graph.node("Sub", [high, low], "size")
    middle = graph.node("Mul", [graph.node("Add", [high, low], "sum"), graph.scalar(0.5, "half")], "mid")
    # Back to the landmarks' frame: centre = R(t) middle (as a row vector: middle @ R(t)^T).
    turn = graph.node("Transpose", [undo], "turn", perm=[0, 2, 1])
    middle3 = graph.node("Reshape", [middle, graph.constant(np.array([-1, 1, 2], np.int64), "shape")], "mid3")
    centre = graph.node("Reshape", [graph.node("MatMul", [middle3, turn], "centre"),
                                    graph.constant(np.array([-1, 2], np.int64), "shape")], "centre")  # fmt: skip
    out_w, out_h = opts["output_width"], opts["output_height"]
    per_pixel = np.array([opts["scale_x"] / out_w, opts["scale_y"] / out_h], np.float32)
    step = graph.node("Mul", [size, graph.constant(per_pixel, "per_pixel")], "step")  # (sx, sy)
    sx, sy = part(step, 0), part(step, 1)
    cx, cy = part(centre, 0), part(centre, 1)
    a00, a01 = graph.node("Mul", [cos, sx], "a00"), graph.node("Mul", [neg_sin, sy], "a01")
    a10, a11 = graph.node("Mul", [sin, sx], "a10"), graph.node("Mul", [cos, sy], "a11")
    half_w, half_h = (
        graph.scalar(-out_w / 2, "hw"),
        graph.scalar(-out_h / 2, "hh"),
    )

    def shift(c: str, first: str, second: str) -> str:
        return graph.node(
            "Add",
            [c, graph.node("Add", [graph.node("Mul", [first, half_w], "m"), graph.node("Mul", [second, half_h], "m")],
                           "s")],
            "t",
        )  # fmt: skip

    tx, ty = shift(cx, a00, a01), shift(cy, a10, a11)
    zero = graph.node("Mul", [cos, graph.scalar(0, "zero")], "zero")  # [N, 1] zeros
    one = graph.node("Add", [zero, graph.scalar(1, "one")], "one")
    rows = [a00, a01, zero, tx, a10, a11, zero, ty, zero, zero, one, zero, zero, zero, zero, one]
    flat = graph.node("Concat", rows, "matrix", axis=1)
    return graph.node("Reshape", [flat, graph.constant(np.array([-1, 4, 4], np.int64), "shape")], "matrix")


def _transform_tensor_bilinear(graph: _Graph, op: tflite.Operator) -> str:
    """Sample an NHWC feature map at the transformed output pixel centres, bilinearly; a sample whose position
    falls outside [0, size - 1] is 0 as a whole (not partly, as GridSample's zero padding would make it)."""
    _check_version(graph, op, "TransformTensorBilinear")
    opts = _custom_options(op)
    features, matrix = graph.names[op.Inputs(0)], graph.names[op.Inputs(1)]
    _, height, width, _ = graph.shape(op.Inputs(0))
    out_h, out_w = opts["output_height"], opts["output_width"]
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)[None]  # [1, P, 2]
    _, transposed, shift = _columns(graph, matrix)
    positions = graph.node("Add", [graph.node("MatMul", [graph.constant(centres, "pixels"), transposed], "p"), shift],
                           "positions")  # fmt: skip
    positions = graph.node("Sub", [positions, graph.scalar(0.5, "half")], "positions")  # [N, P, 2]
    limits = np.array([width - 1, height - 1], np.float32)
    inside = graph.node(
        "And",
        [graph.node("GreaterOrEqual", [positions, graph.scalar(0, "zero")], "ge"),
         graph.node("LessOrEqual", [positions, graph.constant(limits, "limits")], "le")],
        "inside",
    )  # fmt: skip
    inside = graph.node("Cast", [graph.node("ReduceMin", [graph.node("Cast", [inside], "i", to=TensorProto.INT32),
                                                          graph.constant(np.array([2], np.int64), "axes")],
                                            "both", keepdims=0)], "mask", to=TensorProto.FLOAT)  # fmt: skip
    mask = graph.node("Reshape", [inside, graph.constant(np.array([-1, 1, out_h, out_w], np.int64), "shape")], "mask")
    normalised = graph.node(
        "Sub", [graph.node("Mul", [positions, graph.constant(2 / limits, "scale")], "n"),
                graph.scalar(1, "one")], "grid"
    )  # fmt: skip
    grid = graph.node(
        "Reshape", [normalised, graph.constant(np.array([-1, out_h, out_w, 2], np.int64), "shape")], "grid"
    )
    sampled = graph.node(
        "GridSample", [features, grid], "sampled", mode="bilinear", padding_mode="zeros", align_corners=1
    )
    return graph.node("Mul", [sampled, mask], "transformed")


def _transform_landmarks(graph: _Graph, op: tflite.Operator) -> str:
    """Points [N, K, 2] through the [N, 4, 4] transform's first two rows (z = 0, w = 1)."""
    _check_version(graph, op, "TransformLandmarks")
    if graph.shape(op.Inputs(0))[-1] != 2:
        raise UnsupportedModel("TransformLandmarks of 3-D points")
    points, matrix = graph.names[op.Inputs(0)], graph.names[op.Inputs(1)]
    _, transposed, shift = _columns(graph, matrix)
    return graph.node("Add", [graph.node("MatMul", [points, transposed], "p"), shift], "landmarks")


_CONVERTERS: dict[str, Callable[[_Graph, tflite.Operator], str | None]] = {
    "CONV_2D": lambda g, op: _conv(g, op, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda g, op: _conv(g, op, depthwise=True),
    "MAX_POOL_2D": lambda g, op: _pool(g, op, "MaxPool"),
    "AVERAGE_POOL_2D": lambda g, op: _pool(g, op, "AveragePool"),
    "ADD": lambda g, op: _binary(g, op, "Add", tflite.AddOptions),
    "MUL": lambda g, op: _binary(g, op, "Mul", tflite.MulOptions),
    "STRIDED_SLICE": _identity_slice,
    "CUSTOM:Landmarks2TransformMatrix": _landmarks_to_transform_matrix,
    "CUSTOM:TransformTensorBilinear": _transform_tensor_bilinear,
    "CUSTOM:TransformLandmarks": _transform_landmarks,
    "PRELU": _prelu,
    "RELU": lambda g, op: g.node("Relu", [g.names[op.Inputs(0)]], "relu"),
    "PAD": _pad,
    "RESHAPE": _reshape,
    "CONCATENATION": _concat,
    "DEQUANTIZE": _dequantize,
}


def _needed(
    nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], outputs: set[str]
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers that the outputs depend on, in order."""
    wanted, kept = set(outputs), []
    for node in reversed(nodes):
        if wanted.intersection(node.output):
            kept.append(node)
            wanted.update(node.input)
    return kept[::-1], [init for init in initializers if init.name in wanted]


def operator_names(model_bytes: bytes) -> list[str]:
    """The operators of the model's main graph, in order (CUSTOM:<name> for custom ones)."""
    model = tflite.Model.GetRootAsModel(model_bytes, 0)
    subgraph = model.Subgraphs(0)
    names = []
    for i in range(subgraph.OperatorsLength()):
        code = model.OperatorCodes(subgraph.Operators(i).OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        names.append(f"CUSTOM:{custom.decode()}" if custom else _OPERATOR_NAMES.get(builtin, str(builtin)))
    return names


def convert(model_bytes: bytes, graph_name: str, outputs: set[str] | None = None) -> onnx.ModelProto:
    """The TFLite model's main graph as an ONNX model (same input and output names and NHWC shapes, float32,
    dynamic batch axis); with `outputs`, only those outputs and what they need."""
    model = tflite.Model.GetRootAsModel(model_bytes, 0)
    if model.SubgraphsLength() != 1:
        raise UnsupportedModel(f"{model.SubgraphsLength()} subgraphs (one expected)")
    graph = _Graph(model, model.Subgraphs(0))
    ops = operator_names(model_bytes)
    unsupported = sorted(set(ops) - set(_CONVERTERS))
    if unsupported:
        raise UnsupportedModel(f"unsupported TFLite operators: {', '.join(unsupported)}")

    inputs = []
    for i in range(graph.subgraph.InputsLength()):
        index = graph.subgraph.Inputs(i)
        name, shape = graph.tensor(index).Name().decode(), graph.shape(index)
        if len(shape) != 4:
            raise UnsupportedModel(f"input {name} has shape {shape} (NHWC images expected)")
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape[1:]]))
        graph.names[index] = graph.node("Transpose", [name], "nchw", perm=list(_NHWC_TO_NCHW))

    for i, op_name in enumerate(ops):
        op = graph.subgraph.Operators(i)
        out = _CONVERTERS[op_name](graph, op)
        if out is not None:
            graph.names[op.Outputs(0)] = out

    kept = []
    for i in range(graph.subgraph.OutputsLength()):
        index = graph.subgraph.Outputs(i)
        name, shape = graph.tensor(index).Name().decode(), graph.shape(index)
        if outputs is not None and name not in outputs:
            continue
        source = graph.names[index]
        perm = list(_NCHW_TO_NHWC) if len(shape) == 4 else list(range(len(shape)))
        graph.nodes.append(helper.make_node("Transpose", [source], [name], name=name, perm=perm))
        kept.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape[1:]]))
    if outputs is not None and {o.name for o in kept} != outputs:
        raise UnsupportedModel(f"the model has no outputs {sorted(outputs - {o.name for o in kept})}")

    nodes, initializers = _needed(graph.nodes, graph.initializers, {o.name for o in kept})
    onnx_graph = helper.make_graph(nodes, graph_name, inputs, kept, initializers)
    converted = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)])
    converted.ir_version = 8
    onnx.checker.check_model(converted, full_check=True)
    return converted
