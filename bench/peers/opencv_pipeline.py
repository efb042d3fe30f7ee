#!/usr/bin/python3
"""The embedding-pipeline peer of `./imagesearch bench peers`: what a user would write with Debian's
OpenCV instead of ImageSearch. Decodes each photo with cv2.imread, resizes it to the model's input
with cv2.dnn.blobFromImages (bilinear, BGR->RGB, NCHW float32, pixels 0-255 as the exported model
expects), runs the same exported ONNX model through OpenCV's DNN module in batches, L2-normalises
the raw embeddings into a numpy matrix (the "index") and searches it by dot product.

Run by the C# bench with the same thread count as ImageSearch; prints one JSON object on stdout.
Debian python3-opencv (OpenCV 4.6) and python3-numpy; run with /usr/bin/python3 (a pyenv shim on
PATH lacks Debian's modules).

  opencv_pipeline.py --model models/mobilenet-v2-1.4/model.onnx --size 224 --gallery bench-dev/gallery \
      --threads 2 [--limit N] [--batch 16] [--seconds 2] [--queries bench-dev/instance.tsv --query-count 200] \
      [--check-tensor T.f32 --check-embeddings E.f32 --check-count N --check-dims D]
"""
import argparse
import json
import os
import time

import cv2
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--size", type=int, required=True, help="model input side (square)")
    p.add_argument("--gallery", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--limit", type=int, default=0, help="first N gallery photos only (0 = all)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=2.0, help="time per raw-model configuration")
    p.add_argument("--queries", help="instance.tsv of the benchmark (query_id, query_path, box, ...)")
    p.add_argument("--query-count", type=int, default=200)
    p.add_argument("--check-tensor", help="float32 NCHW tensors written by the C# bench")
    p.add_argument("--check-embeddings", help="ONNX Runtime's raw embeddings of the same tensors (float32)")
    p.add_argument("--check-count", type=int, default=0)
    p.add_argument("--check-dims", type=int, default=0)
    a = p.parse_args()

    cv2.setNumThreads(a.threads)
    out = {"opencv": cv2.__version__, "numpy": np.__version__, "threads": cv2.getNumThreads(), "batch": a.batch}

    t = time.perf_counter()
    net = cv2.dnn.readNetFromONNX(a.model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    out["load_s"] = time.perf_counter() - t

    def embed(images):
        blob = cv2.dnn.blobFromImages(images, 1.0, (a.size, a.size), (0, 0, 0), swapRB=True, crop=False)
        net.setInput(blob)
        return net.forward().reshape(len(images), -1)

    # Same tensors through both runtimes: are the vectors the same?
    if a.check_tensor:
        n, s = a.check_count, a.size
        tensors = np.fromfile(a.check_tensor, dtype=np.float32).reshape(n, 3, s, s)
        theirs = np.fromfile(a.check_embeddings, dtype=np.float32).reshape(n, a.check_dims)
        net.setInput(tensors)
        ours = net.forward().reshape(n, -1)
        cos = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
        out["check"] = {"images": n, "max_abs_diff": float(np.max(np.abs(ours - theirs))),
                        "max_abs_value": float(np.max(np.abs(theirs))), "min_cosine": float(np.min(cos))}

    # Raw model: pre-made input, as the C# bench measures ONNX Runtime, best of a few batch sizes.
    rng = np.random.RandomState(7)
    best = (0.0, 0)
    for b in (1, 2, 8, 16):
        blob = rng.randint(0, 256, (b, 3, a.size, a.size)).astype(np.float32)
        net.setInput(blob)
        net.forward()
        done, t = 0, time.perf_counter()
        while time.perf_counter() - t < a.seconds:
            net.setInput(blob)
            net.forward()
            done += b
        rate = done / (time.perf_counter() - t)
        if rate > best[0]:
            best = (rate, b)
    out["raw_model_images_per_s"], out["raw_model_batch"] = best

    # The pipeline: decode, resize, embed in batches, normalise into the matrix. One pass, timed from
    # a loaded model to the last vector in the matrix (the C# side times the same span).
    files = sorted(os.listdir(a.gallery))
    if a.limit:
        files = files[:a.limit]
    paths = [os.path.join(a.gallery, f) for f in files]
    embed([np.zeros((a.size, a.size, 3), np.uint8)])  # warm-up
    t = time.perf_counter()
    rows, batch, failed = [], [], 0
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            failed += 1
            continue
        batch.append(img)
        if len(batch) == a.batch:
            rows.append(embed(batch))
            batch = []
    if batch:
        rows.append(embed(batch))
    matrix = np.vstack(rows).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    seconds = time.perf_counter() - t
    out["pipeline"] = {"images": len(paths) - failed, "failed": failed, "seconds": seconds,
                       "images_per_s": (len(paths) - failed) / seconds}

    # Search: read, decode, crop to the box, embed, dot product against the matrix, top 10.
    if a.queries:
        root = os.path.dirname(os.path.abspath(a.queries))
        with open(a.queries, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
            qi, bi = header.index("query_path"), header.index("box")
            queries = [line.rstrip("\n").split("\t") for line in f if line.strip()][:a.query_count]
        total, knn = [], []
        for q in queries:
            t = time.perf_counter()
            img = cv2.imread(os.path.join(root, q[qi]), cv2.IMREAD_COLOR)
            if q[bi]:
                x, y, w, h = (int(v) for v in q[bi].split(","))
                img = img[max(y, 0):y + h, max(x, 0):x + w]
            v = embed([img])[0]
            v /= np.linalg.norm(v)
            k = time.perf_counter()
            scores = matrix @ v
            top = np.argpartition(-scores, 10)[:10]
            top = top[np.argsort(-scores[top])]
            end = time.perf_counter()
            total.append((end - t) * 1000)
            knn.append((end - k) * 1000)
        total.sort()
        knn.sort()
        out["search"] = {"queries": len(total), "p50_ms": pct(total, 0.5), "p99_ms": pct(total, 0.99), "knn_p50_ms": pct(knn, 0.5),
                         "gallery": len(matrix)}

    print(json.dumps(out))


def pct(sorted_values, p):
    """Nearest-rank percentile, as the C# bench computes it."""
    if not sorted_values:
        return float("nan")
    i = max(0, min(len(sorted_values) - 1, int(np.ceil(p * len(sorted_values))) - 1))
    return sorted_values[i]


if __name__ == "__main__":
    main()
