#!/usr/bin/python3
"""The vector-search peers of `./imagesearch bench peers`: FAISS (IndexHNSWFlat and the exact
IndexFlatIP) and hnswlib's Python bindings, from Debian (python3-faiss 1.7.3, python3-hnswlib
0.6.2), on the vectors the C# bench wrote, with its exact top 10 as the truth.

Every library gets the same vectors, queries, thread count, M and efConstruction, and is timed the
same way as ImageSearch's side: build = adding every vector to an empty index; memory = growth of
the native heap across the build (glibc mallinfo2), per vector; QPS = all queries searched as one batch on
`--threads` threads, the fastest of at least 3 passes and `--min-seconds`. Prints one JSON object.

  ann.py --lib faiss-hnsw|faiss-flat|hnswlib --base B.f32 --count N --dim D --queries Q.f32 --nq Q \
      --truth T.i32 [--m 16] [--ef-construction 200] [--efs 10,16,32,64] [--threads 2] [--min-seconds 1]

B.f32, Q.f32: unit-length float32 rows; T.i32: int32, 10 row numbers of B per query, best first.
"""
import argparse
import ctypes
import json
import time

import numpy as np

K = 10


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def heap_bytes():
    """Bytes in use on the native heap, every arena and mmapped block (glibc mallinfo2): the
    libraries allocate their index with malloc/new, so the growth across a build is the index."""
    m = _libc.mallinfo2()
    return m.uordblks + m.hblkhd


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lib", required=True, choices=["faiss-hnsw", "faiss-flat", "hnswlib"])
    p.add_argument("--base", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--nq", type=int, required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--efs", default="10,16,32,64,128")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--flat-seconds", type=float, default=10.0, help="time budget for the exact scan")
    a = p.parse_args()

    n, d = a.count, a.dim
    base = np.fromfile(a.base, dtype=np.float32, count=n * d).reshape(n, d)
    queries = np.fromfile(a.queries, dtype=np.float32, count=a.nq * d).reshape(a.nq, d)
    truth = np.fromfile(a.truth, dtype=np.int32, count=a.nq * K).reshape(a.nq, K)
    out = {"lib": a.lib, "count": n, "dim": d, "queries": a.nq, "threads": a.threads, "m": a.m,
           "ef_construction": a.ef_construction, "rows": []}

    if a.lib.startswith("faiss"):
        import faiss
        faiss.omp_set_num_threads(a.threads)
        out["version"] = "faiss " + faiss.__version__ + " (" + faiss.get_compile_options().strip() + ")"
        before = heap_bytes()
        t = time.perf_counter()
        if a.lib == "faiss-hnsw":
            index = faiss.IndexHNSWFlat(d, a.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = a.ef_construction
        else:
            index = faiss.IndexFlatIP(d)
        index.add(base)
        out["build_s"] = time.perf_counter() - t
        out["index_bytes"] = heap_bytes() - before

        if a.lib == "faiss-hnsw":
            def search(ef):
                index.hnsw.efSearch = ef
                return index.search(queries, K)[1]
            for ef in parse_efs(a.efs):
                out["rows"].append(measure(search, ef, a.nq, truth, a.min_seconds))
        else:
            # Exact scan, in batches of 16 queries: under FAISS's BLAS threshold (20) it uses its own
            # SIMD loop, parallel over the queries; above it, the system BLAS (reference BLAS on a
            # plain Debian install) would be the measure instead. Budgeted: at 1M vectors each query
            # reads the whole matrix.
            done, found, t = 0, [], time.perf_counter()
            while done < a.nq and (done == 0 or time.perf_counter() - t < a.flat_seconds):
                found.append(index.search(queries[done:done + 16], K)[1])
                done += len(found[-1])
            seconds = time.perf_counter() - t
            out["rows"].append({"ef": 0, "recall": recall(np.vstack(found), truth[:done]), "qps": done / seconds, "queries": done})
    else:
        import hnswlib
        out["version"] = "hnswlib " + getattr(hnswlib, "__version__", "0.6.2 (Debian python3-hnswlib)")
        before = heap_bytes()
        t = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=d)
        index.init_index(max_elements=n, ef_construction=a.ef_construction, M=a.m, random_seed=100)
        index.set_num_threads(a.threads)
        index.add_items(base, np.arange(n), num_threads=a.threads)
        out["build_s"] = time.perf_counter() - t
        out["index_bytes"] = heap_bytes() - before

        def search(ef):
            index.set_ef(ef)
            return index.knn_query(queries, k=K, num_threads=a.threads)[0]
        for ef in parse_efs(a.efs):
            out["rows"].append(measure(search, ef, a.nq, truth, a.min_seconds))

    out["bytes_per_vector"] = out["index_bytes"] / n
    print(json.dumps(out))


def parse_efs(text):
    return [int(e) for e in text.split(",") if e]


def measure(search, ef, nq, truth, min_seconds):
    """QPS of the fastest whole pass over the queries (at least 3 passes, at least min_seconds in
    all): other work on a shared machine only ever slows a pass down."""
    found = search(ef)  # warm-up, and the answers scored
    best, passes, start = float("inf"), 0, time.perf_counter()
    while passes < 3 or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        search(ef)
        best = min(best, time.perf_counter() - t)
        passes += 1
    return {"ef": ef, "recall": recall(found, truth), "qps": nq / best}


def recall(found, truth):
    """Mean over queries of |found top 10 ∩ true top 10| / 10."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / (len(truth) * K)


if __name__ == "__main__":
    main()
