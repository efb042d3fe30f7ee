// extern "C" shim over hnswlib::HierarchicalNSW<float> (Debian libhnswlib-dev 0.6.2, header-only)
// for the managed ImageSearch.VectorStore.HnswIndex wrapper.
//
// Space: inner product. Vectors are unit length, so distance = 1 - dot = 1 - cosine.
//
// Error model: every entry point that can fail returns an hnsw_status code (0 = ok) and leaves a
// message in a thread-local buffer read with hnsw_last_error(). No C++ exception ever crosses the
// boundary: each body runs inside guard(), which catches everything.
//
// Thread-safety (what the managed side relies on):
//   - hnsw_search, hnsw_label_state and hnsw_get_vector are const and may run concurrently with
//     each other.
//   - every other call mutates the graph and must not overlap with any other call on the same index
//     (hnswlib's resize reallocates the arrays that searches read; the managed wrapper enforces this
//     with a reader/writer lock).
//
// Fixes over the stock 0.6.2 header, applied here rather than by patching the system header:
//   - searchKnn reads the shared member ef_; hnsw_search takes ef per call and calls
//     searchBaseLayerST directly, so concurrent searches with different ef never race.
//   - loading an index counts deletions onto an uninitialised num_deleted_, and a failed load
//     leaves a graph whose destructor walks past its arrays; hnsw_load initialises both.
//   - saveIndex writes through an unchecked std::ofstream (a full disk yields a silently truncated
//     file); hnsw_save checks the written size and fsyncs.
//   - loadIndex only checks the file size; hnsw_load also checks that the record layout matches the
//     requested dimension and that every stored link points inside the graph, so a damaged file is
//     reported instead of crashing a later search.
//
// Distance kernels are picked at run time, not compile time. hnswlib's space_ip.h selects its
// kernels with the compiler's -m flags; the shim is built for x86-64-v2 (SSE4.2) so that it runs on
// any x86-64 machine, which left only SSE even on AVX-512 hardware. The graph calls its distance
// through a function pointer taken from the space, so the shim gives it its own space whose
// pointer is chosen at load by CPUID: AVX-512F or AVX2+FMA kernels compiled with per-function
// target attributes (never executed unless the CPU and OS support them), else hnswlib's SSE kernel,
// else a scalar loop. IMAGESEARCH_HNSW_KERNEL=scalar|sse|avx2|avx512 caps the choice (diagnostics);
// hnsw_create can also ask for a lower kernel (benchmarks, tests). Every kernel computes
// 1 - dot(a, b); they differ only in summation order (FMA, lane count).
//
// Vector formats: float32 (4 bytes per dimension) or int8 (one byte per dimension plus a float
// scale per vector, symmetric: code = round(x * 127 / max|x|)), about a quarter of the memory. The
// shim encodes on add and search, so callers always pass floats; int8 distances are exact integer
// dot products times the two scales, so every int8 kernel gives bit-identical results. The graph
// then ranks by approximate distances: callers that keep the float vectors rescore the beam.

#include <hnswlib/hnswlib.h>  // includes <x86intrin.h> on x86-64: the kernels' intrinsics

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace {

enum hnsw_status : int32_t {
    HNSW_OK = 0,
    HNSW_INVALID_ARGUMENT = 1,
    HNSW_NOT_FOUND = 2,         // label not in the index
    HNSW_CAPACITY = 3,          // index full: resize first
    HNSW_ALREADY_EXISTS = 4,    // add without replace on an existing label
    HNSW_ALREADY_DELETED = 5,   // mark_deleted on a deleted label
    HNSW_NOT_DELETED = 6,       // unmark on a live label
    HNSW_IO = 7,                // file could not be read or written
    HNSW_CORRUPT = 8,           // file is not a valid index for this dimension
    HNSW_OUT_OF_MEMORY = 9,
    HNSW_INTERNAL = 10,         // any other exception thrown by hnswlib
};

// Thrown inside the shim to pick the status code; never leaves it.
struct shim_error : std::runtime_error {
    hnsw_status status;
    shim_error(hnsw_status s, const std::string& message) : std::runtime_error(message), status(s) {}
};

thread_local std::string last_error;

template <typename F>
int32_t guard(F&& body) noexcept {
    try {
        body();
        last_error.clear();
        return HNSW_OK;
    } catch (const shim_error& e) {
        last_error = e.what();
        return e.status;
    } catch (const std::bad_alloc&) {
        last_error = "out of memory";
        return HNSW_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        // hnswlib reports "Not enough memory..." as runtime_error.
        last_error = e.what();
        return std::strstr(e.what(), "memory") != nullptr ? HNSW_OUT_OF_MEMORY : HNSW_INTERNAL;
    } catch (...) {
        last_error = "unknown native exception";
        return HNSW_INTERNAL;
    }
}

using Graph = hnswlib::HierarchicalNSW<float>;


// ---------------------------------------------------------------------------------------------
// Distance kernels: 1 - dot(a, b) over *(size_t*)param floats.

enum hnsw_kernel : int32_t { KERNEL_SCALAR = 0, KERNEL_SSE = 1, KERNEL_AVX2 = 2, KERNEL_AVX512 = 3 };

// The reference every SIMD kernel is tested against.
float ip_distance_scalar(const void* a, const void* b, const void* param) {
    const float* x = static_cast<const float*>(a);
    const float* y = static_cast<const float*>(b);
    const size_t n = *static_cast<const size_t*>(param);
    float dot = 0;
    for (size_t i = 0; i < n; i++) dot += x[i] * y[i];
    return 1.0f - dot;
}

#if defined(__x86_64__)
// Four independent 8-lane accumulators: the adds of one iteration do not wait for each other.
__attribute__((target("avx2,fma"))) float ip_distance_avx2(const void* a, const void* b, const void* param) {
    const float* x = static_cast<const float*>(a);
    const float* y = static_cast<const float*>(b);
    const size_t n = *static_cast<const size_t*>(param);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    const __m256 sum = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    float dot = _mm_cvtss_f32(r);
    for (; i < n; i++) dot += x[i] * y[i];
    return 1.0f - dot;
}

// Four 16-lane accumulators (64 floats per iteration: a 512-d vector is 8 iterations) and a
// masked load for the tail, so any dimension works without a scalar loop. GCC 12's AVX-512
// headers build their "undefined" registers by self-initialisation (`__m512 __Y = __Y;`), which
// -Wuninitialized reports inside _mm512_reduce_add_ps; silenced for this function only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) float ip_distance_avx512(const void* a, const void* b, const void* param) {
    const float* x = static_cast<const float*>(a);
    const float* y = static_cast<const float*>(b);
    const size_t n = *static_cast<const size_t*>(param);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    if (i < n) {
        const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, y + i), s1);
    }
    return 1.0f - _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
#pragma GCC diagnostic pop
#endif

// The best kernel this CPU and OS can run (__builtin_cpu_supports checks CPUID and, for AVX and
// AVX-512, that the OS saves the wider registers).
int32_t best_kernel() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return KERNEL_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return KERNEL_AVX2;
#endif
#if defined(USE_SSE)
    return KERNEL_SSE;
#else
    return KERNEL_SCALAR;
#endif
}

int32_t kernel_from_name(const char* name, int32_t fallback) {
    if (name == nullptr) return fallback;
    if (std::strcmp(name, "scalar") == 0) return KERNEL_SCALAR;
    if (std::strcmp(name, "sse") == 0) return KERNEL_SSE;
    if (std::strcmp(name, "avx2") == 0) return KERNEL_AVX2;
    if (std::strcmp(name, "avx512") == 0) return KERNEL_AVX512;
    return fallback;
}

// Kernel for indexes created or loaded without asking for one: the best, capped by the environment.
const int32_t default_kernel = std::min(best_kernel(), kernel_from_name(std::getenv("IMAGESEARCH_HNSW_KERNEL"), KERNEL_AVX512));

// Inner-product space whose distance function is the chosen kernel. The SSE level borrows
// hnswlib's own kernels (what the shim used before run-time dispatch), which pick a variant by
// dimension (multiples of 16, of 4, residuals).
class DispatchedInnerProductSpace : public hnswlib::SpaceInterface<float> {
public:
    DispatchedInnerProductSpace(size_t dim, int32_t kernel) : dim_(dim), sse_(dim), kernel_(kernel) {
        switch (kernel) {
#if defined(__x86_64__)
            case KERNEL_AVX512: fn_ = ip_distance_avx512; break;
            case KERNEL_AVX2: fn_ = ip_distance_avx2; break;
#endif
            case KERNEL_SSE: fn_ = sse_.get_dist_func(); break;
            default: fn_ = ip_distance_scalar; kernel_ = KERNEL_SCALAR; break;
        }
    }
    size_t get_data_size() override { return dim_ * sizeof(float); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return fn_; }
    void* get_dist_func_param() override { return &dim_; }
    int32_t kernel() const { return kernel_; }

private:
    size_t dim_;
    hnswlib::InnerProductSpace sse_;
    hnswlib::DISTFUNC<float> fn_;
    int32_t kernel_;
};


// ---------------------------------------------------------------------------------------------
// int8 records: [float scale][int8 code x dim].

enum vector_format : int32_t { FORMAT_FLOAT32 = 0, FORMAT_INT8 = 1 };

size_t int8_record_size(size_t dim) { return sizeof(float) + dim; }

void encode_int8(const float* v, size_t dim, char* out) {
    float max_abs = 0;
    for (size_t i = 0; i < dim; i++) max_abs = std::max(max_abs, std::fabs(v[i]));
    const float scale = max_abs / 127.0f;
    const float inverse = scale > 0 ? 1.0f / scale : 0.0f;
    std::memcpy(out, &scale, sizeof scale);
    int8_t* codes = reinterpret_cast<int8_t*>(out + sizeof scale);
    for (size_t i = 0; i < dim; i++) codes[i] = static_cast<int8_t>(std::clamp(std::lrint(v[i] * inverse), -127L, 127L));
}

void decode_int8(const char* record, size_t dim, float* out) {
    float scale;
    std::memcpy(&scale, record, sizeof scale);
    const int8_t* codes = reinterpret_cast<const int8_t*>(record + sizeof scale);
    for (size_t i = 0; i < dim; i++) out[i] = codes[i] * scale;
}

// 1 - scale_a * scale_b * (integer dot of the codes), from the integer dot. The empty asm makes the
// product a value of its own, so that inside an AVX2/AVX-512 target function GCC cannot contract
// the subtraction into an FMA: every kernel then rounds exactly as the scalar one. (An earlier
// out-of-line version cost more than the dot product itself: the AVX-512 kernel tail-called it
// without vzeroupper, and its legacy-SSE instructions paid for the dirty upper registers; perf
// showed 23% of the search time in those five instructions.)
inline float int8_distance(const void* a, const void* b, int32_t dot) {
    float sa, sb;
    std::memcpy(&sa, a, sizeof sa);
    std::memcpy(&sb, b, sizeof sb);
    float product = sa * sb * static_cast<float>(dot);
#if defined(__x86_64__)
    __asm__("" : "+x"(product));
#endif
    return 1.0f - product;
}

inline const int8_t* int8_codes(const void* record) { return reinterpret_cast<const int8_t*>(static_cast<const char*>(record) + sizeof(float)); }

float i8_distance_scalar(const void* a, const void* b, const void* param) {
    const int8_t* x = int8_codes(a);
    const int8_t* y = int8_codes(b);
    const size_t n = *static_cast<const size_t*>(param);
    int32_t dot = 0;
    for (size_t i = 0; i < n; i++) dot += x[i] * y[i];
    return int8_distance(a, b, dot);
}

#if defined(__x86_64__)
// SSE4.1 (part of the x86-64-v2 baseline): sign-extend 8 codes to 16 bits, multiply-add pairs.
__attribute__((target("sse4.1"))) float i8_distance_sse(const void* a, const void* b, const void* param) {
    const int8_t* x = int8_codes(a);
    const int8_t* y = int8_codes(b);
    const size_t n = *static_cast<const size_t*>(param);
    __m128i acc = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
        const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_cvtepi8_epi16(va), _mm_cvtepi8_epi16(vb)));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_cvtepi8_epi16(_mm_srli_si128(va, 8)), _mm_cvtepi8_epi16(_mm_srli_si128(vb, 8))));
    }
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(1, 0, 3, 2)));
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(2, 3, 0, 1)));
    int32_t dot = _mm_cvtsi128_si32(acc);
    for (; i < n; i++) dot += x[i] * y[i];
    return int8_distance(a, b, dot);
}

__attribute__((target("avx2"))) float i8_distance_avx2(const void* a, const void* b, const void* param) {
    const int8_t* x = int8_codes(a);
    const int8_t* y = int8_codes(b);
    const size_t n = *static_cast<const size_t*>(param);
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i va = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
        const __m256i vb = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
    }
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    int32_t dot = _mm_cvtsi128_si32(r);
    for (; i < n; i++) dot += x[i] * y[i];
    return int8_distance(a, b, dot);
}

// 32 codes per step, widened to 16 bits in one 512-bit register (AVX-512BW).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw"))) float i8_distance_avx512(const void* a, const void* b, const void* param) {
    const int8_t* x = int8_codes(a);
    const int8_t* y = int8_codes(b);
    const size_t n = *static_cast<const size_t*>(param);
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512i va = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
        const __m512i vb = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + i)));
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(va, vb));
    }
    int32_t dot = _mm512_reduce_add_epi32(acc);
    for (; i < n; i++) dot += x[i] * y[i];
    return int8_distance(a, b, dot);
}
#pragma GCC diagnostic pop
#endif

// The int8 kernels need a little more than the float ones at the top level (AVX-512BW).
int32_t best_int8_kernel() {
    int32_t best = best_kernel();
#if defined(__x86_64__)
    if (best == KERNEL_AVX512 && !__builtin_cpu_supports("avx512bw")) best = KERNEL_AVX2;
#endif
    return best;
}

class Int8InnerProductSpace : public hnswlib::SpaceInterface<float> {
public:
    Int8InnerProductSpace(size_t dim, int32_t kernel) : dim_(dim), kernel_(std::min(kernel, best_int8_kernel())) {
        switch (kernel_) {
#if defined(__x86_64__)
            case KERNEL_AVX512: fn_ = i8_distance_avx512; break;
            case KERNEL_AVX2: fn_ = i8_distance_avx2; break;
            case KERNEL_SSE: fn_ = i8_distance_sse; break;
#endif
            default: fn_ = i8_distance_scalar; kernel_ = KERNEL_SCALAR; break;
        }
    }
    size_t get_data_size() override { return int8_record_size(dim_); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return fn_; }
    void* get_dist_func_param() override { return &dim_; }
    int32_t kernel() const { return kernel_; }

private:
    size_t dim_;
    hnswlib::DISTFUNC<float> fn_;
    int32_t kernel_;
};

std::unique_ptr<hnswlib::SpaceInterface<float>> make_space(size_t dim, int32_t kernel, int32_t format, int32_t* kernel_used) {
    if (format == FORMAT_INT8) {
        auto space = std::make_unique<Int8InnerProductSpace>(dim, kernel);
        *kernel_used = space->kernel();
        return space;
    }
    auto space = std::make_unique<DispatchedInnerProductSpace>(dim, kernel);
    *kernel_used = space->kernel();
    return space;
}

}  // namespace

// Owns the space too: HierarchicalNSW keeps a pointer into it (the dimension used by the distance).
struct hnsw_index {
    std::unique_ptr<hnswlib::SpaceInterface<float>> space;
    std::unique_ptr<Graph> graph;
    size_t dim = 0;
    int32_t kernel = KERNEL_SCALAR;
    int32_t format = FORMAT_FLOAT32;

    // What the graph stores for `v` (float32: v itself; int8: its record, in `buffer`).
    const void* record(const float* v, std::vector<char>& buffer) const {
        if (format == FORMAT_FLOAT32) return v;
        buffer.resize(int8_record_size(dim));
        encode_int8(v, dim, buffer.data());
        return buffer.data();
    }

    size_t record_size() const { return format == FORMAT_INT8 ? int8_record_size(dim) : dim * sizeof(float); }
};

namespace {

void check_index(const hnsw_index* index) {
    if (index == nullptr || !index->graph) throw shim_error(HNSW_INVALID_ARGUMENT, "index is null");
}

hnswlib::tableint internal_id(const Graph& g, uint64_t label) {
    auto it = g.label_lookup_.find(static_cast<hnswlib::labeltype>(label));
    if (it == g.label_lookup_.end()) throw shim_error(HNSW_NOT_FOUND, "label " + std::to_string(label) + " is not in the index");
    return it->second;
}

// Bytes saveIndex writes for the graph as it is now (mirrors its field order).
uint64_t expected_file_size(const Graph& g) {
    uint64_t size = sizeof(g.offsetLevel0_) + sizeof(g.max_elements_) + sizeof(g.cur_element_count) +
                    sizeof(g.size_data_per_element_) + sizeof(g.label_offset_) + sizeof(g.offsetData_) +
                    sizeof(g.maxlevel_) + sizeof(g.enterpoint_node_) + sizeof(g.maxM_) + sizeof(g.maxM0_) +
                    sizeof(g.M_) + sizeof(g.mult_) + sizeof(g.ef_construction_);
    size += static_cast<uint64_t>(g.cur_element_count) * g.size_data_per_element_;
    for (size_t i = 0; i < g.cur_element_count; i++) {
        size += sizeof(unsigned int);
        if (g.element_levels_[i] > 0) size += static_cast<uint64_t>(g.size_links_per_element_) * g.element_levels_[i];
    }
    return size;
}

void fsync_file(const char* path) {
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw shim_error(HNSW_IO, std::string("cannot open '") + path + "' to fsync: " + std::strerror(errno));
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) throw shim_error(HNSW_IO, std::string("fsync '") + path + "' failed: " + std::strerror(err));
}

// Element count from a snapshot header (third size_t), bounded by what the file can hold, so a
// damaged header cannot make loadIndex allocate for billions of elements.
uint64_t read_element_count(const char* path) {
    struct stat st {};
    if (::stat(path, &st) != 0) throw shim_error(HNSW_IO, std::string("cannot stat '") + path + "': " + std::strerror(errno));
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw shim_error(HNSW_IO, std::string("cannot open '") + path + "': " + std::strerror(errno));
    uint64_t header[4] = {};
    const ssize_t got = ::pread(fd, header, sizeof(header), 0);
    ::close(fd);
    if (got != static_cast<ssize_t>(sizeof(header))) throw shim_error(HNSW_CORRUPT, "snapshot is too short");
    const uint64_t count = header[2];
    const uint64_t record = header[3];  // size_data_per_element_
    if (record == 0 || count > UINT32_MAX || count > static_cast<uint64_t>(st.st_size) / record)
        throw shim_error(HNSW_CORRUPT, "snapshot header is inconsistent with its size");
    return count;
}

// A loaded file passed loadIndex's size check; make sure it is also structurally sound for this
// dimension before any search walks it (O(links), a few ms per 100k points).
void validate_loaded(const Graph& g, size_t record_size) {
    const size_t n = g.cur_element_count;
    if (g.label_offset_ < g.offsetData_ || g.label_offset_ - g.offsetData_ != record_size)
        throw shim_error(HNSW_CORRUPT, "snapshot was built for another dimension or vector format");
    if (g.size_data_per_element_ != g.size_links_level0_ + record_size + sizeof(hnswlib::labeltype) ||
        g.offsetData_ != g.size_links_level0_ || g.offsetLevel0_ != 0)
        throw shim_error(HNSW_CORRUPT, "snapshot has an unexpected record layout");
    if (g.M_ == 0 || g.maxM0_ != 2 * g.M_ || g.maxM_ != g.M_)
        throw shim_error(HNSW_CORRUPT, "snapshot has inconsistent M parameters");
    if (n > 0 && (g.enterpoint_node_ >= n || g.maxlevel_ < 0))
        throw shim_error(HNSW_CORRUPT, "snapshot entry point is out of range");
    if (g.label_lookup_.size() != n) throw shim_error(HNSW_CORRUPT, "snapshot holds duplicate labels");
    for (size_t i = 0; i < n; i++) {
        const int levels = g.element_levels_[i];
        if (levels > g.maxlevel_) throw shim_error(HNSW_CORRUPT, "snapshot element level exceeds the graph's");
        for (int level = 0; level <= levels; level++) {
            hnswlib::linklistsizeint* list = g.get_linklist_at_level(static_cast<hnswlib::tableint>(i), level);
            const size_t count = g.getListCount(list);
            if (count > (level == 0 ? g.maxM0_ : g.maxM_)) throw shim_error(HNSW_CORRUPT, "snapshot link list is too long");
            const hnswlib::tableint* links = reinterpret_cast<const hnswlib::tableint*>(list + 1);
            for (size_t j = 0; j < count; j++) {
                if (links[j] >= n) throw shim_error(HNSW_CORRUPT, "snapshot link points outside the graph");
                if (level > g.element_levels_[links[j]]) throw shim_error(HNSW_CORRUPT, "snapshot link points to a missing level");
            }
        }
    }
}

}  // namespace

extern "C" {

// Message of the last failed call on this thread ("" after a successful one). Valid until the
// next shim call on the same thread.
__attribute__((visibility("default"))) const char* hnsw_last_error(void) { return last_error.c_str(); }

// kernel: -1 for the default (hnsw_simd_level), else a level up to hnsw_best_kernel (int8 caps it
// at what its kernels need). format: 0 = float32, 1 = int8.
__attribute__((visibility("default"))) int32_t hnsw_create(int32_t dim, uint64_t max_elements, uint64_t m,
                                                          uint64_t ef_construction, uint64_t seed, int32_t kernel,
                                                          int32_t format, hnsw_index** out) {
    return guard([&] {
        if (out == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "out is null");
        *out = nullptr;
        if (dim <= 0) throw shim_error(HNSW_INVALID_ARGUMENT, "dim must be > 0");
        if (max_elements == 0 || max_elements > UINT32_MAX)
            throw shim_error(HNSW_INVALID_ARGUMENT, "max_elements must be in 1..2^32-1 (hnswlib uses 32-bit internal ids)");
        if (m < 2 || m > 10000) throw shim_error(HNSW_INVALID_ARGUMENT, "M must be in 2..10000");
        if (kernel < -1 || kernel > best_kernel()) throw shim_error(HNSW_INVALID_ARGUMENT, "kernel " + std::to_string(kernel) + " is not supported here");
        if (format != FORMAT_FLOAT32 && format != FORMAT_INT8) throw shim_error(HNSW_INVALID_ARGUMENT, "unknown vector format " + std::to_string(format));
        auto index = std::make_unique<hnsw_index>();
        index->dim = static_cast<size_t>(dim);
        index->format = format;
        index->space = make_space(index->dim, kernel < 0 ? default_kernel : kernel, format, &index->kernel);
        index->graph = std::make_unique<Graph>(index->space.get(), max_elements, m, ef_construction, seed);
        *out = index.release();
    });
}

// Loads a file written by hnsw_save. max_elements is the capacity wanted after loading (the
// file's own capacity when smaller than its element count). The level generator is reseeded from
// `seed` because the file does not store hnswlib's random state.
// format must be the one the file was saved with (a mismatch is reported as HNSW_CORRUPT).
__attribute__((visibility("default"))) int32_t hnsw_load(const char* path, int32_t dim, uint64_t max_elements,
                                                        uint64_t seed, int32_t format, hnsw_index** out) {
    return guard([&] {
        if (out == nullptr || path == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "path and out are required");
        *out = nullptr;
        if (dim <= 0) throw shim_error(HNSW_INVALID_ARGUMENT, "dim must be > 0");
        if (max_elements > UINT32_MAX) throw shim_error(HNSW_INVALID_ARGUMENT, "max_elements must be < 2^32");
        if (format != FORMAT_FLOAT32 && format != FORMAT_INT8) throw shim_error(HNSW_INVALID_ARGUMENT, "unknown vector format " + std::to_string(format));
        max_elements = std::max<uint64_t>(max_elements, read_element_count(path));

        auto index = std::make_unique<hnsw_index>();
        index->dim = static_cast<size_t>(dim);
        index->format = format;
        index->space = make_space(index->dim, default_kernel, format, &index->kernel);
        index->graph = std::make_unique<Graph>(index->space.get());
        Graph& graph = *index->graph;
        // The bare constructor leaves these uninitialised, and the destructor frees them after a
        // failed load; loadIndex also counts deletions onto num_deleted_ without zeroing it.
        graph.num_deleted_ = 0;
        graph.cur_element_count = 0;
        graph.data_level0_memory_ = nullptr;
        graph.linkLists_ = nullptr;
        graph.visited_list_pool_ = nullptr;
        try {
            graph.loadIndex(path, index->space.get(), max_elements);
        } catch (const std::exception& e) {
            // loadIndex reads the element count before it sizes element_levels_; the destructor walks
            // element_levels_ up to that count, so make the half-built graph safe to destroy.
            if (graph.element_levels_.size() < graph.cur_element_count) graph.cur_element_count = 0;
            throw shim_error(HNSW_CORRUPT, std::string("snapshot rejected: ") + e.what());
        }
        validate_loaded(graph, index->record_size());
        graph.metric_distance_computations = 0;
        graph.metric_hops = 0;
        graph.level_generator_.seed(seed);
        graph.update_probability_generator_.seed(seed + 1);
        *out = index.release();
    });
}

// Writes the graph to `path` (replacing it), verifies the written size and fsyncs the file. The
// caller makes it visible atomically (rename) and fsyncs the directory.
__attribute__((visibility("default"))) int32_t hnsw_save(hnsw_index* index, const char* path) {
    return guard([&] {
        check_index(index);
        if (path == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "path is null");
        const uint64_t expected = expected_file_size(*index->graph);
        index->graph->saveIndex(path);
        struct stat st {};
        if (::stat(path, &st) != 0) throw shim_error(HNSW_IO, std::string("cannot stat '") + path + "': " + std::strerror(errno));
        if (static_cast<uint64_t>(st.st_size) != expected)
            throw shim_error(HNSW_IO, "snapshot write was incomplete (disk full?): wrote " + std::to_string(st.st_size) +
                                          " of " + std::to_string(expected) + " bytes");
        fsync_file(path);
    });
}

// Adds a point, or (replace != 0) overwrites the vector of an existing label in place through
// hnswlib's updatePoint, which also clears a delete mark. Fails with HNSW_CAPACITY when a new
// label does not fit: the caller resizes and retries.
__attribute__((visibility("default"))) int32_t hnsw_add(hnsw_index* index, uint64_t label, const float* vec, int32_t replace) {
    return guard([&] {
        check_index(index);
        if (vec == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "vector is null");
        Graph& g = *index->graph;
        const bool exists = g.label_lookup_.count(static_cast<hnswlib::labeltype>(label)) != 0;
        if (exists && !replace) throw shim_error(HNSW_ALREADY_EXISTS, "label " + std::to_string(label) + " already exists");
        if (!exists && g.cur_element_count >= g.max_elements_)
            throw shim_error(HNSW_CAPACITY, "index is full (" + std::to_string(g.max_elements_) + " elements)");
        std::vector<char> buffer;
        g.addPoint(index->record(vec, buffer), static_cast<hnswlib::labeltype>(label));
    });
}

// Adds `count` new points (vectors packed row after row) on up to `threads` threads, using
// hnswlib's concurrent insertion as its Python bindings do (the graph then depends on thread
// scheduling, and hnswlib draws node levels from an unsynchronised generator, which only perturbs
// the level distribution; threads == 1 is deterministic). Checked before anything is added: every label is new and distinct, and they all
// fit in capacity. A failure midway (out of memory) leaves the points added so far.
__attribute__((visibility("default"))) int32_t hnsw_add_batch(hnsw_index* index, const uint64_t* labels, const float* vectors,
                                                             uint64_t count, int32_t threads) {
    return guard([&] {
        check_index(index);
        if (count == 0) return;
        if (labels == nullptr || vectors == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "labels and vectors are required");
        Graph& g = *index->graph;
        if (count > g.max_elements_ - g.cur_element_count)
            throw shim_error(HNSW_CAPACITY, "index is full (" + std::to_string(g.max_elements_) + " elements)");
        std::unordered_set<uint64_t> seen;
        seen.reserve(count);
        for (uint64_t i = 0; i < count; i++) {
            if (g.label_lookup_.count(static_cast<hnswlib::labeltype>(labels[i])) != 0 || !seen.insert(labels[i]).second)
                throw shim_error(HNSW_ALREADY_EXISTS, "label " + std::to_string(labels[i]) + " already exists or repeats");
        }

        std::atomic<uint64_t> next{0};
        std::atomic<bool> failed{false};
        std::exception_ptr error;
        std::mutex error_lock;
        auto work = [&]() noexcept {
            try {
                std::vector<char> buffer;
                for (uint64_t i = next++; i < count && !failed; i = next++)
                    g.addPoint(index->record(vectors + i * index->dim, buffer), static_cast<hnswlib::labeltype>(labels[i]));
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_lock);
                if (!error) error = std::current_exception();
                failed = true;
            }
        };
        const uint64_t workers = std::min<uint64_t>(count, static_cast<uint64_t>(std::max(threads, 1)));
        std::vector<std::thread> pool;
        try {
            for (uint64_t w = 1; w < workers; w++) pool.emplace_back(work);
        } catch (...) {
            // Could not start a thread: stop the ones running (a joinable std::thread must never be destroyed).
            failed = true;
            for (auto& t : pool) t.join();
            throw;
        }
        work();
        for (auto& t : pool) t.join();
        if (error) std::rethrow_exception(error);
    });
}

// Copies the vector stored for `label` (deleted or not) into `out` (dim floats; int8: decoded, so
// only an approximation of the vector added).
__attribute__((visibility("default"))) int32_t hnsw_get_vector(const hnsw_index* index, uint64_t label, float* out) {
    return guard([&] {
        check_index(index);
        if (out == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "out is null");
        const Graph& g = *index->graph;
        const char* data = g.getDataByInternalId(internal_id(g, label));
        if (index->format == FORMAT_INT8) decode_int8(data, index->dim, out);
        else std::memcpy(out, data, index->dim * sizeof(float));
    });
}

// *out_same = 1 when what the graph holds for `label` is exactly what adding `vec` would store
// (float32: the same bits; int8: the same codes and scale), else 0. HNSW_NOT_FOUND when absent.
__attribute__((visibility("default"))) int32_t hnsw_same_vector(const hnsw_index* index, uint64_t label, const float* vec, int32_t* out_same) {
    return guard([&] {
        check_index(index);
        if (vec == nullptr || out_same == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "vector and out are required");
        const Graph& g = *index->graph;
        std::vector<char> buffer;
        *out_same = std::memcmp(g.getDataByInternalId(internal_id(g, label)), index->record(vec, buffer), index->record_size()) == 0;
    });
}

__attribute__((visibility("default"))) int32_t hnsw_mark_deleted(hnsw_index* index, uint64_t label) {
    return guard([&] {
        check_index(index);
        Graph& g = *index->graph;
        const hnswlib::tableint id = internal_id(g, label);
        if (g.isMarkedDeleted(id)) throw shim_error(HNSW_ALREADY_DELETED, "label " + std::to_string(label) + " is already deleted");
        g.markDeletedInternal(id);
    });
}

__attribute__((visibility("default"))) int32_t hnsw_unmark_deleted(hnsw_index* index, uint64_t label) {
    return guard([&] {
        check_index(index);
        Graph& g = *index->graph;
        const hnswlib::tableint id = internal_id(g, label);
        if (!g.isMarkedDeleted(id)) throw shim_error(HNSW_NOT_DELETED, "label " + std::to_string(label) + " is not deleted");
        g.unmarkDeletedInternal(id);
    });
}

// 0 = absent, 1 = live, 2 = marked deleted.
__attribute__((visibility("default"))) int32_t hnsw_label_state(const hnsw_index* index, uint64_t label) {
    if (index == nullptr || !index->graph) return 0;
    const Graph& g = *index->graph;
    auto it = g.label_lookup_.find(static_cast<hnswlib::labeltype>(label));
    if (it == g.label_lookup_.end()) return 0;
    return g.isMarkedDeleted(it->second) ? 2 : 1;
}

// k nearest live points, closest first. Same walk as HierarchicalNSW::searchKnn (greedy descent
// through the upper layers, then a beam of max(ef, k) on layer 0) but with ef passed in, not read
// from the shared ef_ member, and without the atomic metric counters that would make concurrent
// searches contend on one cache line.
__attribute__((visibility("default"))) int32_t hnsw_search(const hnsw_index* index, const float* query, uint64_t k, uint64_t ef,
                                                          uint64_t* out_labels, float* out_dists, uint64_t* out_count) {
    return guard([&] {
        check_index(index);
        if (query == nullptr || out_labels == nullptr || out_dists == nullptr || out_count == nullptr)
            throw shim_error(HNSW_INVALID_ARGUMENT, "query and output buffers are required");
        *out_count = 0;
        if (k == 0) return;
        const Graph& g = *index->graph;
        if (g.cur_element_count == 0) return;
        std::vector<char> buffer;
        const void* q = index->record(query, buffer);

        hnswlib::tableint current = g.enterpoint_node_;
        float current_dist = g.fstdistfunc_(q, g.getDataByInternalId(current), g.dist_func_param_);
        for (int level = g.maxlevel_; level > 0; level--) {
            bool changed = true;
            while (changed) {
                changed = false;
                hnswlib::linklistsizeint* list = g.get_linklist(current, level);
                const size_t size = g.getListCount(list);
                const hnswlib::tableint* links = reinterpret_cast<const hnswlib::tableint*>(list + 1);
                for (size_t i = 0; i < size; i++) {
                    const float d = g.fstdistfunc_(q, g.getDataByInternalId(links[i]), g.dist_func_param_);
                    if (d < current_dist) {
                        current_dist = d;
                        current = links[i];
                        changed = true;
                    }
                }
            }
        }

        const size_t beam = static_cast<size_t>(std::max(ef, k));
        auto top = g.num_deleted_ != 0 ? g.searchBaseLayerST<true>(current, q, beam)
                                       : g.searchBaseLayerST<false>(current, q, beam);
        while (top.size() > k) top.pop();
        // The queue pops farthest first; fill the outputs from the back.
        size_t n = top.size();
        *out_count = n;
        while (!top.empty()) {
            n--;
            out_dists[n] = top.top().first;
            out_labels[n] = g.getExternalLabel(top.top().second);
            top.pop();
        }
    });
}

// Elements held, deleted ones included (they still occupy capacity).
__attribute__((visibility("default"))) uint64_t hnsw_count(const hnsw_index* index) {
    return index != nullptr && index->graph ? index->graph->cur_element_count : 0;
}

__attribute__((visibility("default"))) uint64_t hnsw_deleted_count(const hnsw_index* index) {
    return index != nullptr && index->graph ? index->graph->num_deleted_ : 0;
}

__attribute__((visibility("default"))) uint64_t hnsw_capacity(const hnsw_index* index) {
    return index != nullptr && index->graph ? index->graph->max_elements_ : 0;
}

__attribute__((visibility("default"))) int32_t hnsw_resize(hnsw_index* index, uint64_t new_max_elements) {
    return guard([&] {
        check_index(index);
        if (new_max_elements > UINT32_MAX) throw shim_error(HNSW_INVALID_ARGUMENT, "max_elements must be < 2^32");
        if (new_max_elements < index->graph->cur_element_count)
            throw shim_error(HNSW_INVALID_ARGUMENT, "cannot shrink below the current element count");
        index->graph->resizeIndex(new_max_elements);
    });
}

__attribute__((visibility("default"))) void hnsw_free(hnsw_index* index) {
    // Destructors do not throw (free/delete only).
    delete index;
}

// fsync a file or directory by path: the managed side uses it to make a rename durable
// (.NET has no API to fsync a directory).
__attribute__((visibility("default"))) int32_t hnsw_fsync_path(const char* path) {
    return guard([&] {
        if (path == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "path is null");
        fsync_file(path);
    });
}

// The distance kernel indexes get unless hnsw_create asks for another: 0 = scalar, 1 = SSE,
// 2 = AVX2+FMA, 3 = AVX-512F.
__attribute__((visibility("default"))) int32_t hnsw_simd_level(void) { return default_kernel; }

// The best kernel this machine supports (the default unless IMAGESEARCH_HNSW_KERNEL caps it).
__attribute__((visibility("default"))) int32_t hnsw_best_kernel(void) { return best_kernel(); }

// The kernel one index uses.
__attribute__((visibility("default"))) int32_t hnsw_index_kernel(const hnsw_index* index) {
    return index != nullptr && index->space ? index->kernel : -1;
}

// The distance the graph would compute between a and b with the given kernel and format (int8:
// both encoded first), for tests against the scalar reference. Fails with HNSW_INVALID_ARGUMENT
// for a kernel this machine cannot run.
__attribute__((visibility("default"))) int32_t hnsw_distance(int32_t kernel, int32_t format, const float* a, const float* b, uint64_t dim, float* out) {
    return guard([&] {
        if (a == nullptr || b == nullptr || out == nullptr) throw shim_error(HNSW_INVALID_ARGUMENT, "a, b and out are required");
        if (kernel < KERNEL_SCALAR || kernel > best_kernel()) throw shim_error(HNSW_INVALID_ARGUMENT, "kernel " + std::to_string(kernel) + " is not supported here");
        if (format != FORMAT_FLOAT32 && format != FORMAT_INT8) throw shim_error(HNSW_INVALID_ARGUMENT, "unknown vector format " + std::to_string(format));
        hnsw_index index;
        index.dim = static_cast<size_t>(dim);
        index.format = format;
        index.space = make_space(index.dim, kernel, format, &index.kernel);
        std::vector<char> ra, rb;
        *out = index.space->get_dist_func()(index.record(a, ra), index.record(b, rb), index.space->get_dist_func_param());
    });
}

}  // extern "C"
