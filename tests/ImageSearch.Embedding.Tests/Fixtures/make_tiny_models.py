#!/usr/bin/python3
"""Generates the tiny ONNX models the embedding unit tests run (committed next to this script).

They stand in for the real exported CNNs, which are large and fetched by `./imagesearch setup`:
same input/output names, layout and model.json format, so OnnxEmbedder runs them unchanged.

  tiny-identity  image [N,3,4,5] -> embedding [N,60]: the input flattened, so a test can read
                 back exactly what the NCHW packing produced.
  tiny-cnn       image [N,3,32,24] -> embedding [N,32]: scale 1/255, two strided 3x3 convs with
                 ReLU, global average pool; non-square so a width/height mix-up shows.

Run with Debian's python3 and python3-onnx, python3-numpy (apt-get install python3-onnx):
  /usr/bin/python3 make_tiny_models.py
Output is deterministic (fixed seed), so re-running it only changes files when this script changes.
"""
import hashlib
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 13


def save(name, graph, width, height, dims):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="make_tiny_models.py")
    model.ir_version = 7
    onnx.checker.check_model(model)
    folder = os.path.join(HERE, "models", name)
    os.makedirs(folder, exist_ok=True)
    data = model.SerializeToString()
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(data)
    manifest = {
        "name": name,
        "version": "1",
        "input": {"name": "image", "width": width, "height": height, "layout": "NCHW",
                  "channels": "RGB", "range": [0, 255]},
        "output": {"name": "embedding", "dimensions": dims},
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def image_input(width, height):
    return helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])


def embedding_output(dims):
    return helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dims])


def identity():
    width, height = 5, 4
    dims = 3 * width * height
    shape = numpy_helper.from_array(np.array([-1, dims], dtype=np.int64), "shape")
    node = helper.make_node("Reshape", ["image", "shape"], ["embedding"])
    graph = helper.make_graph([node], "tiny-identity", [image_input(width, height)],
                              [embedding_output(dims)], [shape])
    save("tiny-identity", graph, width, height, dims)


def cnn():
    width, height, dims = 24, 32, 32
    rng = np.random.default_rng(20240607)
    w1 = rng.normal(0, 0.4, (16, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, (16,)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (dims, 16, 3, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, (dims,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(1.0 / 255.0, dtype=np.float32), "scale"),
        numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2"),
    ]
    nodes = [
        helper.make_node("Mul", ["image", "scale"], ["x0"]),
        helper.make_node("Conv", ["x0", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["embedding"], axis=1),
    ]
    graph = helper.make_graph(nodes, "tiny-cnn", [image_input(width, height)], [embedding_output(dims)], inits)
    save("tiny-cnn", graph, width, height, dims)


if __name__ == "__main__":
    identity()
    cnn()
