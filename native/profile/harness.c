// Drives libhnsw_shim.so directly (no .NET) for valgrind and perf: builds a graph of N clustered
// random 512-d vectors, then searches Q of them (ef 64). Usage: harness KERNEL FORMAT N Q
// (kernel 0 scalar .. 3 avx512, format 0 float32 / 1 int8). Build and run (docs/BENCHMARKS.md):
//   gcc -O2 -o /tmp/harness native/profile/harness.c -Lnative/build -lhnsw_shim -lm -Wl,-rpath,$PWD/native/build
//   valgrind --tool=callgrind --toggle-collect=hnsw_search /tmp/harness 1 0 5000 1000
//   valgrind --leak-check=full --error-exitcode=9 /tmp/harness 2 1 1000 100
// valgrind 3.19 does not emulate AVX-512 (the shim then picks AVX2).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
typedef struct hnsw_index hnsw_index;
int32_t hnsw_create(int32_t, uint64_t, uint64_t, uint64_t, uint64_t, int32_t, int32_t, hnsw_index**);
int32_t hnsw_add_batch(hnsw_index*, const uint64_t*, const float*, uint64_t, int32_t);
int32_t hnsw_search(const hnsw_index*, const float*, uint64_t, uint64_t, uint64_t*, float*, uint64_t*);
int32_t hnsw_index_kernel(const hnsw_index*);
void hnsw_free(hnsw_index*);
const char* hnsw_last_error(void);
static float rnd(void) { return (float)rand() / RAND_MAX * 2 - 1; }
int main(int argc, char** argv) {
    int kernel = atoi(argv[1]), format = atoi(argv[2]); uint64_t n = atoll(argv[3]), q = atoll(argv[4]); const int d = 512;
    float* data = malloc(sizeof(float) * n * d); uint64_t* labels = malloc(8 * n);
    float centers[64][512]; srand(1);
    for (int c = 0; c < 64; c++) for (int j = 0; j < d; j++) centers[c][j] = rnd();
    for (uint64_t i = 0; i < n; i++) { double s = 0; for (int j = 0; j < d; j++) { float v = centers[i % 64][j] + rnd(); data[i*d+j] = v; s += v*v; } for (int j = 0; j < d; j++) data[i*d+j] /= sqrt(s); labels[i] = i; }
    hnsw_index* index; if (hnsw_create(d, n, 16, 100, 100, kernel, format, &index)) { fprintf(stderr, "%s\n", hnsw_last_error()); return 1; }
    if (hnsw_add_batch(index, labels, data, n, 1)) { fprintf(stderr, "%s\n", hnsw_last_error()); return 1; }
    uint64_t out[64]; float dist[64]; uint64_t found, hits = 0;
    for (uint64_t i = 0; i < q; i++) { hnsw_search(index, data + (i % n) * d, 10, 64, out, dist, &found); hits += out[0] == i % n; }
    printf("kernel %d format %d: top-1 self hits %llu of %llu\n", hnsw_index_kernel(index), format, (unsigned long long)hits, (unsigned long long)q);
    hnsw_free(index); free(data); free(labels); return 0;
}
