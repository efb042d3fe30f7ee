#!/usr/bin/python3
"""Export the ImageNet-pretrained CNN backbones shipped in the npm package nsfwjs to ONNX.

nsfwjs bundles TF.js models as JavaScript modules: `model.min.js` exports the model.json object
(as a minified JS object literal, not JSON) and each `group1-shard*.min.js` exports one base64
string holding a slice of the uint8-quantized weight buffer. This script reads those files
directly, rebuilds the network up to a feature layer as plain NCHW ONNX operators and writes
`<out>/<name>/model.onnx` plus a `model.json` descriptor.

Only the operators and layer configurations these two models use are supported; anything else
raises ExportError naming the layer/node, so a changed upstream model cannot be half-converted.

Output is deterministic: no timestamps, fixed node/initializer order, weights dequantized and
folded in float64 then rounded once to float32.

Run with Debian's interpreter (python3-onnx, python3-numpy):
    /usr/bin/python3 tools/ModelExport/export.py --nsfwjs node_modules/nsfwjs --out models
"""

import argparse
import base64
import contextlib
import hashlib
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Opset 10 is deliberate: it is the newest opset whose Clip takes min/max as attributes.
# OpenCV 4.6's ONNX importer only accepts single-input Clip (opset >= 11 passes min/max as
# inputs and is rejected, as is Min with a constant operand), so ReLU6 is Clip(min=0, max=6)
# at opset 10. Every other operator emitted here has identical semantics in later opsets.
OPSET = 10
IR_VERSION = 5  # the IR version that introduced opset 10
PRODUCER = "ImageSearch tools/ModelExport"
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
BATCH_DIM = "N"


class ExportError(Exception):
    """The source model contains something this exporter does not convert."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str  # model directory inside the nsfwjs package
    kind: str  # "layers" (Keras topology) or "graph" (GraphDef)
    size: int  # input height == width
    dims: int  # embedding size
    cut: str  # Keras layer name or GraphDef node name whose output is the feature map/vector
    cut_text: str  # human description for model.json
    # How the cut's feature map becomes the embedding: "model" (the cut is already a vector, or is
    # average-pooled as the model itself does), or one of POOLINGS over the final convolutional map.
    pooling: str = "model"
    # Multi-scale: the input sizes the backbone runs at, the largest being `size`. The graph takes
    # one `size` x `size` image, resamples it in the graph to each smaller size, pools every
    # scale's map and returns the sum of the L2-normalised pooled vectors. Empty: one scale.
    scales: tuple = ()


_MOBILENET_PREFIX = (
    "StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/"
    "StatefulPartitionedCall/StatefulPartitionedCall/predict/"
)

MODELS = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="inception-v3-mixed7",
            path="dist/models/inception_v3",
            kind="layers",
            size=299,
            dims=768,
            cut="mixed7",
            cut_text="mixed7 + global average pool",
        ),
        ModelSpec(
            name="mobilenet-v2-1.4",
            path="dist/models/mobilenet_v2_mid",
            kind="graph",
            size=224,
            dims=1792,
            cut=_MOBILENET_PREFIX + "feature_vector/SpatialSqueeze",
            cut_text="feature_vector/SpatialSqueeze (Logits/AvgPool of Conv_1, before the 5-class head)",
        ),
        # The same backbone with other poolings of its last convolutional map (Conv_1, 7x7x1792),
        # for the retrieval ablation (docs/QUALITY.md); R-MAC is the product's default model, the
        # others are exported and calibrated on request (./imagesearch ... --model NAME).
        *(
            ModelSpec(
                name=f"mobilenet-v2-1.4-{pooling}",
                path="dist/models/mobilenet_v2_mid",
                kind="graph",
                size=224,
                dims=1792,
                cut=_MOBILENET_PREFIX + "MobilenetV2/Conv_1/Relu6",
                cut_text=f"MobilenetV2/Conv_1/Relu6 (7x7x1792) + {text}",
                pooling=pooling,
            )
            for pooling, text in (
                ("max", "global max pooling (MAC)"),
                ("gem3", "generalised-mean pooling, p = 3 (GeM)"),
                ("rmac", "regional max pooling over 1 + 4 + 9 regions, each L2-normalised, summed (R-MAC)"),
            )
        ),
        # R-MAC at a larger input (a 10x10 map, regions by Tolias et al.'s rule) and the sum of the
        # 224 and 320 scales (docs/QUALITY.md, multi-scale): exported and calibrated on request.
        ModelSpec(
            name="mobilenet-v2-1.4-rmac320",
            path="dist/models/mobilenet_v2_mid",
            kind="graph",
            size=320,
            dims=1792,
            cut=_MOBILENET_PREFIX + "MobilenetV2/Conv_1/Relu6",
            cut_text="MobilenetV2/Conv_1/Relu6 at 320x320 (10x10x1792) + R-MAC over 1 + 4 + 9 regions "
                     "of sides 10, 6 and 5 (Tolias et al.), each L2-normalised, summed",
            pooling="rmac",
        ),
        ModelSpec(
            name="mobilenet-v2-1.4-rmac-ms",
            path="dist/models/mobilenet_v2_mid",
            kind="graph",
            size=320,
            dims=1792,
            cut=_MOBILENET_PREFIX + "MobilenetV2/Conv_1/Relu6",
            cut_text="MobilenetV2/Conv_1/Relu6 at two scales: the 320x320 input resampled in the graph "
                     "to 224x224 (tent filter) + R-MAC as mobilenet-v2-1.4-rmac, and the 320x320 input + "
                     "R-MAC as mobilenet-v2-1.4-rmac320; each L2-normalised, summed",
            pooling="rmac",
            scales=(224, 320),
        ),
    )
}

# Default models: exported (and calibrated) by every setup.
DEFAULT_MODELS = ("inception-v3-mixed7", "mobilenet-v2-1.4-rmac")


# ---------------------------------------------------------------------------------------------
# Reading the nsfwjs JS bundles
# ---------------------------------------------------------------------------------------------

_JS_TOKEN = re.compile(
    r"""\s*(?:
        (?P<punct>[{}\[\]:,])
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<bool>!0|!1)
      | (?P<ident>[A-Za-z_$][\w$]*)
    )""",
    re.VERBOSE,
)
_JS_KEYWORDS = {"null": None, "true": True, "false": False}


def parse_js_literal(text, pos):
    """Parse the JS object/array literal starting at text[pos] (as emitted by a minifier:
    unquoted keys, `!0`/`!1` booleans, numbers like `.5`). Returns (value, end position)."""

    def token(at):
        m = _JS_TOKEN.match(text, at)
        if not m:
            raise ExportError(f"unsupported JS syntax at offset {at}: {text[at:at + 40]!r}")
        return m.lastgroup, m.group(m.lastgroup), m.end()

    def value(at):
        kind, tok, at = token(at)
        if kind == "punct" and tok == "{":
            obj = {}
            kind, tok, nxt = token(at)
            if tok == "}":
                return obj, nxt
            while True:
                kind, key, at = token(at)
                if kind == "string":
                    key = json.loads(key)
                elif kind != "ident":
                    raise ExportError(f"bad object key {key!r} at offset {at}")
                _, colon, at = token(at)
                if colon != ":":
                    raise ExportError(f"expected ':' at offset {at}")
                obj[key], at = value(at)
                _, sep, at = token(at)
                if sep == "}":
                    return obj, at
                if sep != ",":
                    raise ExportError(f"expected ',' or '}}' at offset {at}")
        if kind == "punct" and tok == "[":
            arr = []
            kind, tok, nxt = token(at)
            if tok == "]":
                return arr, nxt
            while True:
                item, at = value(at)
                arr.append(item)
                _, sep, at = token(at)
                if sep == "]":
                    return arr, at
                if sep != ",":
                    raise ExportError(f"expected ',' or ']' at offset {at}")
        if kind == "string":
            return json.loads(tok), at
        if kind == "number":
            is_int = not any(ch in tok for ch in ".eE")
            return (int(tok) if is_int else float(tok)), at
        if kind == "bool":
            return tok == "!0", at
        if kind == "ident" and tok in _JS_KEYWORDS:
            return _JS_KEYWORDS[tok], at
        raise ExportError(f"unexpected JS token {tok!r} at offset {at}")

    return value(pos)


def read_model_json(model_dir):
    path = model_dir / "model.min.js"
    text = path.read_text(encoding="utf-8")
    # The bundle is a browserify UMD wrapper around a single `<x>.exports={...}` module.
    starts = [m.end() - 1 for m in re.finditer(r"\b\w+\.exports=\{", text)]
    if len(starts) != 1:
        raise ExportError(f"{path}: expected exactly one '<module>.exports={{' object, found {len(starts)}")
    model_json, _ = parse_js_literal(text, starts[0])
    return model_json


def read_shard(path):
    text = path.read_text(encoding="ascii")
    found = re.findall(r'\b\w+\.exports="([A-Za-z0-9+/=]*)"', text)
    if len(found) != 1:
        raise ExportError(f"{path}: expected exactly one base64 '<module>.exports=\"...\"', found {len(found)}")
    return base64.b64decode(found[0], validate=True)


def read_weights(model_dir, manifest):
    """Dequantize every weight exactly like tfjs-core's decodeWeights: q * scale + min computed
    in double precision, stored as float32."""
    weights = {}
    for group in manifest:
        buf = b"".join(read_shard(model_dir / f"{p}.min.js") for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            name, shape = spec["name"], tuple(spec["shape"])
            count = math.prod(shape)
            if spec["dtype"] != "float32":
                raise ExportError(f"weight {name}: dtype {spec['dtype']} not supported")
            quant = spec.get("quantization")
            if quant is None:
                values = np.frombuffer(buf, "<f4", count, offset)
                offset += 4 * count
            elif quant["dtype"] == "uint8":
                q = np.frombuffer(buf, np.uint8, count, offset).astype(np.float64)
                values = q * quant["scale"] + quant["min"]
                offset += count
            else:
                raise ExportError(f"weight {name}: quantization {quant['dtype']} not supported")
            weights[name] = values.astype(np.float32).reshape(shape)
        if offset != len(buf):
            raise ExportError(f"weights manifest covers {offset} bytes but the shards hold {len(buf)}")
    return weights


# ---------------------------------------------------------------------------------------------
# ONNX graph builder (NCHW, static spatial sizes so TF 'same' padding can be made explicit)
# ---------------------------------------------------------------------------------------------


def tf_padding(padding, size, kernel, stride, dilation=1):
    """Explicit (before, after) padding for TF 'valid'/'same'. TF puts the odd pixel of 'same'
    padding after (bottom/right), which ONNX expresses with asymmetric pads."""
    padding = padding.lower()
    if padding == "valid":
        return 0, 0
    if padding != "same":
        raise ExportError(f"padding {padding!r} not supported")
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class Graph:
    def __init__(self, size):
        self.nodes = []
        self.initializers = {}  # name -> np.ndarray, kept mutable until build() for BN folding
        self.shapes = {INPUT_NAME: (3, size, size)}  # tensor -> (C, H, W)
        self.size = size
        self.scope = ""  # prefix of the node (and tensor) names added; see scoped()

    @contextlib.contextmanager
    def scoped(self, scope):
        """Nodes added inside get `scope` prefixed to their names; initializers keep theirs, so a
        scale that needs the weight an earlier scale stored shares it (the file holds one copy).
        Inside a scope, re-adding an initializer with equal contents returns the stored one."""
        saved, self.scope = self.scope, scope
        try:
            yield
        finally:
            self.scope = saved

    def _initializer(self, name, array):
        stored = self.initializers.get(name)
        if stored is None:
            self.initializers[name] = array
        elif not (self.scope and stored.dtype == array.dtype and np.array_equal(stored, array)):
            raise ExportError(f"duplicate initializer {name}")
        return name

    def const(self, name, array):
        return self._initializer(name, np.asarray(array, dtype=np.float32))

    def node(self, op, inputs, output, shape, **attrs):
        output = self.scope + output
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        self.shapes[output] = shape
        return output

    def conv(self, x, name, kernel_oihw, bias, strides, padding, dilations=(1, 1), group=1):
        c, h, w = self.shapes[x]
        out_c, in_c_per_group, kh, kw = kernel_oihw.shape
        if in_c_per_group * group != c:
            raise ExportError(f"{name}: kernel expects {in_c_per_group * group} input channels, got {c}")
        ph = tf_padding(padding, h, kh, strides[0], dilations[0])
        pw = tf_padding(padding, w, kw, strides[1], dilations[1])
        oh = (h + sum(ph) - (kh - 1) * dilations[0] - 1) // strides[0] + 1
        ow = (w + sum(pw) - (kw - 1) * dilations[1] - 1) // strides[1] + 1
        weight = self.const(f"{name}/weight", kernel_oihw)
        b = self.const(f"{name}/bias", bias if bias is not None else np.zeros(out_c, np.float32))
        # kernel_shape is optional in ONNX but OpenCV 4.6 requires it.
        return self.node(
            "Conv", [x, weight, b], name, (out_c, oh, ow),
            kernel_shape=[kh, kw], strides=list(strides), dilations=list(dilations),
            pads=[ph[0], pw[0], ph[1], pw[1]], group=group,
        )

    def pool(self, op, x, name, kernel, strides, padding):
        c, h, w = self.shapes[x]
        ph = tf_padding(padding, h, kernel[0], strides[0])
        pw = tf_padding(padding, w, kernel[1], strides[1])
        oh = (h + sum(ph) - kernel[0]) // strides[0] + 1
        ow = (w + sum(pw) - kernel[1]) // strides[1] + 1
        # MaxPool ignores pads and AveragePool (count_include_pad=0, the default) excludes them
        # from the divisor: both match TF. OpenCV also excludes them unless the producer is PyTorch.
        return self.node(op, [x], name, (c, oh, ow), kernel_shape=list(kernel), strides=list(strides),
                         pads=[ph[0], pw[0], ph[1], pw[1]])

    def activation(self, kind, x, name):
        if kind == "relu":
            return self.node("Relu", [x], name, self.shapes[x])
        if kind == "relu6":
            return self.node("Clip", [x], name, self.shapes[x], min=0.0, max=6.0)
        raise ExportError(f"{name}: activation {kind!r} not supported")

    def scalar_op(self, op, x, name, value):
        return self.node(op, [x, self.const(f"{name}/value", value)], name, self.shapes[x])

    def const_int64(self, name, array):
        return self._initializer(name, np.asarray(array, dtype=np.int64))

    def flatten(self, x, name):
        c, h, w = self.shapes[x]
        if (h, w) != (1, 1):
            raise ExportError(f"{name}: flattening a {h}x{w} map would not give a per-channel vector")
        return self.node("Flatten", [x], name, (c,), axis=1)

    def build(self, graph_name, output, dims, doc):
        out_shape = self.shapes[output]
        if out_shape != (dims,):
            raise ExportError(f"cut tensor has shape {out_shape}, expected ({dims},)")
        if self.nodes[-1].output[0] != output:
            raise ExportError(f"cut tensor {output} is not produced by the last node")
        self.nodes[-1].output[0] = OUTPUT_NAME
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, 3, self.size, self.size])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, dims])],
            [numpy_helper.from_array(a, n) for n, a in self.initializers.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name=PRODUCER, doc_string=doc)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def hwio_to_oihw(kernel):
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def depthwise_to_grouped(kernel):
    """TF depthwise kernel [kh, kw, C, M] -> ONNX grouped-conv weight [C*M, 1, kh, kw]; TF orders
    the outputs as c*M + m, which is the ONNX group-major order."""
    kh, kw, c, m = kernel.shape
    return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))


def ancestors(target, inputs_of):
    """Names `target` depends on (inclusive), via inputs_of(name) -> list of names."""
    seen, stack = set(), [target]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(inputs_of(name))
    return seen


# ---------------------------------------------------------------------------------------------
# Keras layers model (InceptionV3)
# ---------------------------------------------------------------------------------------------


def convert_layers_model(spec, model_json, weights):
    if spec.scales or spec.pooling != "model":
        raise ExportError(f"{spec.name}: other poolings and scales are only built for the GraphDef models")
    config = model_json["modelTopology"]["model_config"]
    if config["class_name"] not in ("Model", "Functional"):
        raise ExportError(f"model class {config['class_name']} not supported")
    layers = config["config"]["layers"]
    by_name = {layer["name"]: layer for layer in layers}

    def inputs_of(name):
        nodes = by_name[name]["inbound_nodes"]
        if not nodes:
            return []
        if len(nodes) != 1:
            raise ExportError(f"layer {name} is shared ({len(nodes)} call sites); not supported")
        for src, node_index, tensor_index, kwargs in nodes[0]:
            if node_index != 0 or tensor_index != 0 or kwargs:
                raise ExportError(f"layer {name}: inbound {src}[{node_index}][{tensor_index}] {kwargs} not supported")
        return [src for src, *_ in nodes[0]]

    if spec.cut not in by_name:
        raise ExportError(f"cut layer {spec.cut} not found")
    needed = ancestors(spec.cut, inputs_of)
    consumers = {}
    for layer in layers:
        if layer["name"] in needed:
            for src in inputs_of(layer["name"]):
                consumers.setdefault(src, []).append(layer["name"])

    def weight(name):
        if name not in weights:
            raise ExportError(f"weight {name} missing from the weights manifest")
        return weights[name]

    g = Graph(spec.size)
    tensor = {}  # Keras layer name -> ONNX tensor name
    for layer in layers:  # Keras configs list layers in topological order
        name, cls, cfg = layer["name"], layer["class_name"], layer["config"]
        if name not in needed:
            continue
        srcs = [tensor[s] for s in inputs_of(name)]
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise ExportError(f"layer {name}: data_format {cfg['data_format']} not supported")

        if cls == "InputLayer":
            shape = cfg["batch_input_shape"]
            if shape[1:] != [spec.size, spec.size, 3]:
                raise ExportError(f"input layer {name} has shape {shape}, expected [N,{spec.size},{spec.size},3]")
            # nsfwjs feeds the model `pixels.toFloat().div(255)`; Div (not Mul by 1/255) keeps it bit-exact.
            tensor[name] = g.scalar_op("Div", INPUT_NAME, "preprocess/div255", 255.0)
        elif cls == "Conv2D":
            if cfg.get("groups", 1) != 1:
                raise ExportError(f"layer {name}: grouped Conv2D not supported")
            kernel = weight(f"{name}/kernel")
            bias = weight(f"{name}/bias") if cfg["use_bias"] else None
            out = g.conv(srcs[0], name, hwio_to_oihw(kernel), bias, cfg["strides"], cfg["padding"],
                         cfg["dilation_rate"])
            tensor[name] = out if cfg["activation"] == "linear" else g.activation(cfg["activation"], out, f"{name}/act")
        elif cls == "BatchNormalization":
            tensor[name] = fold_batch_norm(g, layer, srcs[0], consumers, weight)
        elif cls == "Activation":
            tensor[name] = g.activation(cfg["activation"], srcs[0], name)
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            op = "MaxPool" if cls == "MaxPooling2D" else "AveragePool"
            tensor[name] = g.pool(op, srcs[0], name, cfg["pool_size"], cfg["strides"] or cfg["pool_size"], cfg["padding"])
        elif cls == "Concatenate":
            if cfg["axis"] not in (3, -1):
                raise ExportError(f"layer {name}: concat axis {cfg['axis']} not supported")
            shapes = [g.shapes[s] for s in srcs]
            if len({s[1:] for s in shapes}) != 1:
                raise ExportError(f"layer {name}: inputs have different spatial sizes {shapes}")
            channels = sum(s[0] for s in shapes)
            tensor[name] = g.node("Concat", srcs, name, (channels,) + shapes[0][1:], axis=1)
        else:
            raise ExportError(f"layer {name}: class {cls} not supported")

    pooled = g.node("GlobalAveragePool", [tensor[spec.cut]], "embedding/global_avg_pool",
                    (g.shapes[tensor[spec.cut]][0], 1, 1))
    return g, g.flatten(pooled, "embedding/flatten")


def rmac_regions(size, levels=3):
    """The R-MAC regions of a size x size map as (top, left, side), level by level: at level
    l = 1..levels, l x l square regions of side floor(2 * size / (l + 1)), the first and last at the
    map's edges and the others evenly spaced between them (top and left floor(i * (size - side) /
    (l - 1))), so neighbours overlap. This is Tolias et al.'s rule as the reference implementation
    of Radenovic et al. (cnnimageretrieval) computes it for a square map; at level 1 the region is
    the whole map. For a 10x10 map: 10; 6 at 0 and 4; 5 at 0, 2 and 5."""
    regions = []
    for level in range(1, levels + 1):
        side = (2 * size) // (level + 1)
        if side < 1:
            raise ExportError(f"a {size}x{size} map is too small for {level}x{level} R-MAC regions")
        starts = [0] if level == 1 else [math.floor(i * (size - side) / (level - 1)) for i in range(level)]
        regions.append([(top, left, side) for top in starts for left in starts])
    return regions


def pool_map(g, x, pooling):
    """The embedding from a [C, H, W] feature map (values >= 0, after ReLU6), as [C].

    max: global max (MAC). gemP: generalised mean (mean of x^P)^(1/P) over positions, x clipped at
    1e-6 (Radenovic et al.). rmac: max over square regions at three scales (the whole map, then
    2x2 and 3x3 overlapping regions), each region vector L2-normalised, then summed (Tolias et
    al., without the per-region whitening). On the 7x7 map of a 224x224 input the regions are the
    shipped default's, 5x5 cells at stride 2 and 3x3 at stride 2, kept so that its vectors (and
    every index and calibration built on them) stay as they are; on any other map they follow
    rmac_regions (which would give 4x4 cells on a 7x7 map)."""
    c, h, w = g.shapes[x]
    if pooling == "max":
        return g.flatten(g.node("GlobalMaxPool", [x], "embedding/global_max_pool", (c, 1, 1)), "embedding/flatten")
    if pooling.startswith("gem"):
        p = float(pooling[3:])
        clipped = g.node("Max", [x, g.const("embedding/gem_eps", 1e-6)], "embedding/gem_clip", (c, h, w))
        powered = g.node("Pow", [clipped, g.const("embedding/gem_p", p)], "embedding/gem_pow", (c, h, w))
        mean = g.node("GlobalAveragePool", [powered], "embedding/gem_mean", (c, 1, 1))
        rooted = g.node("Pow", [mean, g.const("embedding/gem_inv_p", 1.0 / p)], "embedding/gem_root", (c, 1, 1))
        return g.flatten(rooted, "embedding/flatten")
    if pooling == "rmac" and (h, w) != (7, 7):
        return regional_max(g, x, rmac_regions(h) if h == w else None)
    if pooling == "rmac":
        shape = g.const_int64("embedding/rmac_shape", [0, c, -1])
        total = None
        for level, (kernel, stride) in enumerate(((7, 1), (5, 2), (3, 2))):
            pooled = g.pool("MaxPool", x, f"embedding/rmac{level}_max", (kernel, kernel), (stride, stride), "VALID")
            regions = g.shapes[pooled][1] * g.shapes[pooled][2]
            flat = g.node("Reshape", [pooled, shape], f"embedding/rmac{level}_regions", (c, regions))
            unit = g.node("LpNormalization", [flat], f"embedding/rmac{level}_l2", (c, regions), axis=1, p=2)
            summed = g.node("ReduceSum", [unit], f"embedding/rmac{level}_sum", (c,), axes=[2], keepdims=0)
            total = summed if total is None else g.node("Add", [total, summed], f"embedding/rmac_upto{level}", (c,))
        return total
    raise ExportError(f"unknown pooling {pooling}")


def regional_max(g, x, levels):
    """Sum over `levels` (lists of (top, left, side) squares) of each region's L2-normalised
    per-channel max: one Slice, ReduceMax and LpNormalization per region (14 for three levels),
    little work next to the network's (a 10x10x1792 map against about 1.2 G multiply-adds)."""
    c, h, w = g.shapes[x]
    if levels is None:
        raise ExportError(f"R-MAC regions are defined for square maps, not {h}x{w}")
    axes = g.const_int64("embedding/rmac_axes", [2, 3])
    total = None
    for top, left, side in (region for level in levels for region in level):
        name = f"embedding/rmac_{top}_{left}_{side}"
        starts = g.const_int64(f"{name}/starts", [top, left])
        ends = g.const_int64(f"{name}/ends", [top + side, left + side])
        region = g.node("Slice", [x, starts, ends, axes], f"{name}/slice", (c, side, side))
        peak = g.node("ReduceMax", [region], f"{name}/max", (c,), axes=[2, 3], keepdims=0)
        unit = g.node("LpNormalization", [peak], f"{name}/l2", (c,), axis=1, p=2)
        total = unit if total is None else g.node("Add", [total, unit], f"{name}/sum", (c,))
    return total


def tent_resampling(in_size, out_size):
    """The [out_size, in_size] matrix of the decoder's resize (ImageSearch.Imaging's Resampler,
    ResampleKernel.Triangle): output pixel o is centred on input coordinate (o + 0.5) * scale - 0.5,
    the tent is stretched by the scale when shrinking (every input pixel contributes, no
    aliasing), and each row's weights are normalised to sum to 1, as there."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    support = stretch
    taps = math.ceil(support) * 2 + 1
    matrix = np.zeros((out_size, in_size), np.float64)
    for o in range(out_size):
        centre = (o + 0.5) * scale - 0.5
        lo = max(0, math.ceil(centre - support))
        hi = min(in_size - 1, math.floor(centre + support), lo + taps - 1)
        weights = np.array([max(0.0, 1.0 - abs((i - centre) / stretch)) for i in range(lo, hi + 1)])
        if weights.sum() <= 0:
            raise ExportError(f"resampling {in_size} to {out_size}: output {o} has no input")
        matrix[o, lo:hi + 1] = weights / weights.sum()
    return matrix


def resample(g, x, size):
    """x ([3, S, S]) resized to [3, size, size] by tent_resampling along both axes: two MatMuls
    with constant matrices (the batch and channel dimensions broadcast)."""
    channels, height, width = g.shapes[x]
    if height != width:
        raise ExportError(f"resampling a {height}x{width} input is not supported (square only)")
    matrix = tent_resampling(width, size)
    columns = g.node("MatMul", [x, g.const(f"resample{size}/columns", matrix.T)], "resample/columns",
                     (channels, height, size))
    return g.node("MatMul", [g.const(f"resample{size}/rows", matrix), columns], "resample/rows",
                  (channels, size, size))


def fold_batch_norm(g, layer, src, consumers, weight):
    """Fold an inference-mode BatchNormalization into the Conv that produces its input. Only the
    Conv -> BN pattern with no other consumer of the conv output is handled."""
    name, cfg = layer["name"], layer["config"]
    conv = next((n for n in g.nodes if n.output[0] == src), None)
    if conv is None or conv.op_type != "Conv" or consumers.get(conv.name) != [name]:
        raise ExportError(f"BatchNormalization {name} does not directly follow a single-use Conv2D; not supported")
    if cfg["axis"] not in (3, -1):
        raise ExportError(f"BatchNormalization {name}: axis {cfg['axis']} not supported")
    mean = weight(f"{name}/moving_mean").astype(np.float64)
    var = weight(f"{name}/moving_variance").astype(np.float64)
    gamma = weight(f"{name}/gamma").astype(np.float64) if cfg["scale"] else 1.0
    beta = weight(f"{name}/beta").astype(np.float64) if cfg["center"] else 0.0
    scale = gamma / np.sqrt(var + cfg["epsilon"])
    w_name, b_name = conv.input[1], conv.input[2]
    w = g.initializers[w_name].astype(np.float64) * scale[:, None, None, None]
    b = (g.initializers[b_name].astype(np.float64) - mean) * scale + beta
    g.initializers[w_name] = w.astype(np.float32)
    g.initializers[b_name] = b.astype(np.float32)
    return src


# ---------------------------------------------------------------------------------------------
# TF GraphDef model (MobileNetV2 from TF-Hub)
# ---------------------------------------------------------------------------------------------


def _attr_str(node, key):
    return base64.b64decode(node["attr"][key]["s"]).decode()


def _attr_ints(node, key):
    return [int(i) for i in node["attr"][key]["list"].get("i", [])]


def _nhwc_pair(node, key):
    values = _attr_ints(node, key)
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise ExportError(f"node {node['name']}: {key}={values} not supported")
    return values[1:3]


def convert_graph_model(spec, model_json, weights):
    nodes = {n["name"]: n for n in model_json["modelTopology"]["node"]}

    def inputs_of(name):
        if name not in nodes:
            raise ExportError(f"node {name} not found")
        result = []
        for ref in nodes[name].get("input", []):
            if ref.startswith("^"):
                continue  # control dependency (e.g. Const -> ^input): ordering only, carries no data
            src, _, index = ref.partition(":")
            if index not in ("", "0"):
                raise ExportError(f"node {name}: input {ref} (output index {index}) not supported")
            result.append(src)
        return result

    order, state = [], {}

    def visit(name):  # depth-first topological sort of the cut node's ancestry
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            raise ExportError(f"cycle through node {name}")
        state[name] = "active"
        for src in inputs_of(name):
            visit(src)
        state[name] = "done"
        order.append(name)

    visit(spec.cut)

    g = Graph(spec.size)
    if not spec.scales:
        feature = convert_graph_nodes(g, spec, nodes, inputs_of, order, weights, INPUT_NAME)
        return g, feature if spec.pooling == "model" else pool_map(g, feature, spec.pooling)

    # Multi-scale: the backbone once per scale (sharing its weights), on the input resampled in the
    # graph to that scale, so the embedder feeds one image per model run as for any other model.
    if spec.pooling == "model" or max(spec.scales) != spec.size or len(set(spec.scales)) != len(spec.scales):
        raise ExportError(f"{spec.name}: scales {spec.scales} need a pooling of the map and {spec.size} as the largest")
    units = []
    for size in sorted(spec.scales):
        with g.scoped(f"scale{size}/"):
            source = INPUT_NAME if size == spec.size else resample(g, INPUT_NAME, size)
            feature = convert_graph_nodes(g, spec, nodes, inputs_of, order, weights, source)
            pooled = pool_map(g, feature, spec.pooling)
            units.append(g.node("LpNormalization", [pooled], "embedding/l2", g.shapes[pooled], axis=1, p=2))
    total = units[0]
    for i, unit in enumerate(units[1:], start=1):
        total = g.node("Add", [total, unit], f"embedding/scales_upto{i}", g.shapes[unit])
    return g, total


def convert_graph_nodes(g, spec, nodes, inputs_of, order, weights, source):
    """Adds the TF nodes in `order` (up to spec.cut) to g, fed by the image tensor `source`; returns
    the cut's tensor. The network up to its last convolution is fully convolutional, so it runs at
    any input size, although the TF-Hub graph fixes its placeholder at 224x224; only the model's
    own head (a 7x7 average pool) needs that size."""
    tensor, consts = {}, {}
    _, size, _ = g.shapes[source]
    for name in order:
        node, op = nodes[name], nodes[name]["op"]
        srcs = inputs_of(name)
        if "data_format" in node.get("attr", {}) and _attr_str(node, "data_format") != "NHWC":
            raise ExportError(f"node {name}: data_format {_attr_str(node, 'data_format')} not supported")

        if op == "Placeholder":
            dims = [int(d.get("size", -1)) for d in node["attr"]["shape"]["shape"]["dim"]]
            if dims != [-1, dims[1], dims[1], 3] or (size != dims[1] and spec.pooling == "model"):
                raise ExportError(f"placeholder {name} has shape {dims}; the model's own output needs [-1,{size},{size},3]")
            # nsfwjs feeds `pixels.toFloat().div(255)`; the graph itself then maps [0,1] to [-1,1].
            tensor[name] = g.scalar_op("Div", source, "preprocess/div255", 255.0)
        elif op == "Const":
            if name not in weights:
                raise ExportError(f"Const {name} has no entry in the weights manifest (inline constants not supported)")
            consts[name] = weights[name]
        elif op in ("Mul", "Sub", "AddV2", "Add"):
            onnx_op = {"Mul": "Mul", "Sub": "Sub", "AddV2": "Add", "Add": "Add"}[op]
            const_srcs = [s for s in srcs if s in consts]
            if not const_srcs:
                a, b = (tensor[s] for s in srcs)
                if g.shapes[a] != g.shapes[b]:
                    raise ExportError(f"node {name}: broadcasting {g.shapes[a]} with {g.shapes[b]} not supported")
                tensor[name] = g.node(onnx_op, [a, b], name, g.shapes[a])
            else:
                value = consts[const_srcs[0]]
                if len(const_srcs) != 1 or value.shape != ():
                    raise ExportError(f"node {name}: only tensor-op-scalar-constant is supported")
                if op == "Sub" and srcs[0] in consts:
                    raise ExportError(f"node {name}: constant minus tensor not supported")
                x = tensor[srcs[1] if srcs[0] in consts else srcs[0]]
                tensor[name] = g.scalar_op(onnx_op, x, name, value)
        elif op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            tensor[name] = convert_fused_conv(g, node, tensor[srcs[0]], [consts[s] for s in srcs[1:]])
        elif op in ("AvgPool", "MaxPool"):
            onnx_op = "AveragePool" if op == "AvgPool" else "MaxPool"
            tensor[name] = g.pool(onnx_op, tensor[srcs[0]], name, _nhwc_pair(node, "ksize"),
                                  _nhwc_pair(node, "strides"), _attr_str(node, "padding"))
        elif op == "Squeeze":
            if sorted(_attr_ints(node, "squeeze_dims")) != [1, 2]:
                raise ExportError(f"node {name}: only squeezing the spatial dims [1, 2] is supported")
            tensor[name] = g.flatten(tensor[srcs[0]], name)
        elif op == "Identity":
            tensor[name] = tensor[srcs[0]]
        else:
            raise ExportError(f"node {name}: op {op} not supported")
    return tensor[spec.cut]


def convert_fused_conv(g, node, x, args):
    name, attr = node["name"], node["attr"]
    fused = [base64.b64decode(s).decode() for s in attr["fused_ops"]["list"].get("s", [])]
    if fused[:1] != ["BiasAdd"] or len(fused) > 2 or int(attr["num_args"]["i"]) != 1 or len(args) != 2:
        raise ExportError(f"node {name}: fused ops {fused} not supported (expected BiasAdd[, activation])")
    kernel, bias = args
    if node["op"] == "_FusedConv2D":
        weight, group = hwio_to_oihw(kernel), 1
    else:
        weight, group = depthwise_to_grouped(kernel), kernel.shape[2]
    out = g.conv(x, name if len(fused) == 1 else f"{name}/conv", weight, bias,
                 _nhwc_pair(node, "strides"), _attr_str(node, "padding"), _nhwc_pair(node, "dilations"), group)
    return out if len(fused) == 1 else g.activation(fused[1].lower(), out, name)


# ---------------------------------------------------------------------------------------------


def export(spec, nsfwjs_dir, out_dir):
    model_dir = nsfwjs_dir / spec.path
    package = json.loads((nsfwjs_dir / "package.json").read_text(encoding="utf-8"))
    source = f"{package['name']}@{package['version']}"
    model_json = read_model_json(model_dir)
    weights = read_weights(model_dir, model_json["weightsManifest"])
    convert = convert_layers_model if spec.kind == "layers" else convert_graph_model
    graph, output = convert(spec, model_json, weights)
    doc = (f"{spec.name}: {source} {spec.path} cut at {spec.cut_text}. Input {INPUT_NAME} float32 "
           f"[N,3,{spec.size},{spec.size}] RGB 0-255; output {OUTPUT_NAME} float32 [N,{spec.dims}].")
    model = graph.build(spec.name, output, spec.dims, doc)

    target = out_dir / spec.name
    target.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    (target / "model.onnx").write_bytes(data)
    descriptor = {
        "name": spec.name,
        "version": "1",
        "input": {"name": INPUT_NAME, "width": spec.size, "height": spec.size, "layout": "NCHW",
                  "channels": "RGB", "range": [0, 255]},
        "output": {"name": OUTPUT_NAME, "dimensions": spec.dims},
        "source": {"npm": source, "path": spec.path, "cut": spec.cut_text},
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (target / "model.json").write_text(json.dumps(descriptor, indent=2) + "\n", encoding="utf-8")
    ops = sorted({n.op_type for n in model.graph.node})
    return target / "model.onnx", len(data), ops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nsfwjs", type=Path, required=True, help="path to the installed nsfwjs npm package")
    parser.add_argument("--out", type=Path, required=True, help="output directory (one sub-folder per model)")
    parser.add_argument("--model", choices=[*MODELS, "all", "default"], default="default",
                        help="one model, the default ones, or all (with the pooling variants)")
    args = parser.parse_args(argv)

    specs = (MODELS.values() if args.model == "all"
             else [MODELS[n] for n in DEFAULT_MODELS] if args.model == "default"
             else [MODELS[args.model]])
    for spec in specs:
        started = time.monotonic()
        try:
            path, size, ops = export(spec, args.nsfwjs, args.out)
        except (ExportError, OSError) as e:
            print(f"error: exporting {spec.name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(f"{spec.name}: wrote {path} ({size / 1e6:.1f} MB, ops {', '.join(ops)}) "
              f"in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
