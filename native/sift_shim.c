/* SIFT keypoints and descriptors from VLFeat (Debian libvlfeat1 0.9.21), behind one plain C call so
 * that .NET needs no knowledge of VlSiftFilt's layout (its accessors are inline functions in
 * vl/sift.h, not exported symbols of libvl.so).
 *
 * is_sift_extract detects DoG extrema on a grey image (floats in [0, 1], row-major), assigns up to
 * four orientations each, computes the 128-d descriptors, keeps the max_features strongest (by
 * |DoG| at the extremum; ties in detection order) and writes them as frames (x, y, scale sigma,
 * angle radians) and 8-bit descriptors (VLFeat's normalised values times 512, clamped to 255: the
 * usual quantisation). Returns how many were written (0..max_features), or a negative
 * is_sift_status.
 *
 * Two paths give the same features, bit for bit (tests/ImageSearch.Imaging.Tests checks it on
 * real photos for every kernel):
 *
 *  - IS_SIFT_REFERENCE: VLFeat's own pipeline, vl_sift_process_first_octave/next_octave, and a
 *    descriptor for every keypoint orientation before the strongest are kept.
 *  - The fast path (kernel IS_SIFT_DEFAULT or a SIMD level): the Gaussian scale space is built
 *    here into the filter's buffers, replacing process_first_octave/next_octave, whose smoothing
 *    (vl_imconvcol_vf) is scalar in Debian's build and was 35% of the extraction time; detection
 *    and orientations stay VLFeat's own calls (vl_sift_detect, vl_sift_calc_keypoint_orientations)
 *    on that scale space. Descriptors (38% of the time with the gradient) are computed only for the
 *    max_features orientations that are kept: every octave stays in memory, so the strongest can
 *    be chosen after the last octave is detected. The gradient and the descriptor are computed
 *    here, as replicas of VLFeat's update_gradient and vl_sift_calc_keypoint_descriptor (AVX-512
 *    or AVX2 per-sample arithmetic, a plain C replica at the scalar level); VLFeat's own
 *    descriptor call remains the fallback for an octave whose gradient was not computed here.
 *
 * Why the scale spaces are equal bit for bit: VLFeat 0.9.21 smooths with _vl_sift_smooth, a
 * float kernel of half-width max(ceil(4 sigma), 1) (exp in double, normalised in float), applied
 * by vl_imconvcol_vf down the columns and then along the rows, edges padded by continuity; each
 * output is a float sum, in tap order, of float products, starting from 0. Debian's libvl takes
 * the scalar loop (no SSE2 dispatch in its vl_imconvcol_vf; checked with objdump: mulss/addss).
 * The kernels here vectorise across pixels, never across taps, and use separate multiply and add
 * (no FMA: the target attributes name no "fma" and build.sh passes -ffp-contract=off), so every
 * pixel rounds exactly as VLFeat's loop does. The sigmas repeat VLFeat's expressions, powf
 * included, so the kernels are the same floats.
 */
/* syscall(2) (arch_prctl, for AMX) and pthread_setname_np are declared only outside strict C11. */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vl/mathop.h>
#include <vl/sift.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define IS_EXPORT __attribute__((visibility("default")))

enum is_sift_status { IS_SIFT_BAD_ARGUMENT = -1, IS_SIFT_OUT_OF_MEMORY = -2 };

/* The level argument of is_sift_nearest2_many and what is_sift_match_level returns. */
enum is_sift_match { IS_SIFT_MATCH_VNNI = 1, IS_SIFT_MATCH_AMX = 2 };

/* The kernel argument of is_sift_extract: VLFeat's own path, the best this CPU runs, or a cap. */
enum is_sift_kernel {
  IS_SIFT_REFERENCE = -2,
  IS_SIFT_DEFAULT = -1,
  IS_SIFT_SCALAR = 0,
  IS_SIFT_AVX2 = 1,
  IS_SIFT_AVX512 = 2,
};

/* ------------------------------------------------------------------------------------------------
 * Separable Gaussian smoothing, as _vl_sift_smooth + vl_imconvcol_vf compute it.
 * taps[k], k = 0..2r, is VLFeat's filter read from its last element (vl_imconvcol_vf walks the
 * filter backwards); output y sums src[clamp(y - r + k)] * taps[k] for k = 0, 1, ..., 2r.
 * --------------------------------------------------------------------------------------------- */

/* Vertical pass of `rows` rows (of `width` floats) for output row y: rowp[k] = source row
 * clamp(y - r + k). out[x] = sum_k rowp[k][x] * taps[k]. */
typedef void (*column_kernel)(float *out, const float *const *rowp, const float *taps, int ntaps, int from, int to);
/* Horizontal pass over one padded row: out[x] = sum_k pad[x + k] * taps[k], x in [from, to). */
typedef void (*row_kernel)(float *out, const float *pad, const float *taps, int ntaps, int from, int to);

static void column_scalar(float *out, const float *const *rowp, const float *taps, int ntaps, int from, int to) {
  for (int x = from; x < to; x++) {
    float acc = 0;
    for (int k = 0; k < ntaps; k++) acc += rowp[k][x] * taps[k];
    out[x] = acc;
  }
}

static void row_scalar(float *out, const float *pad, const float *taps, int ntaps, int from, int to) {
  for (int x = from; x < to; x++) {
    float acc = 0;
    for (int k = 0; k < ntaps; k++) acc += pad[x + k] * taps[k];
    out[x] = acc;
  }
}

#if defined(__x86_64__)
/* No "fma" in these targets: a multiply and an add can then never be fused, whatever the
 * optimiser does, and each lane rounds as the scalar loop. */
__attribute__((target("avx2"))) static void column_avx2(float *out, const float *const *rowp, const float *taps, int ntaps,
                                                        int from, int to) {
  int x = from;
  for (; x + 16 <= to; x += 16) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int k = 0; k < ntaps; k++) {
      __m256 c = _mm256_set1_ps(taps[k]);
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(rowp[k] + x), c));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(rowp[k] + x + 8), c));
    }
    _mm256_storeu_ps(out + x, a0);
    _mm256_storeu_ps(out + x + 8, a1);
  }
  for (; x + 8 <= to; x += 8) {
    __m256 a0 = _mm256_setzero_ps();
    for (int k = 0; k < ntaps; k++) a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(rowp[k] + x), _mm256_set1_ps(taps[k])));
    _mm256_storeu_ps(out + x, a0);
  }
  column_scalar(out, rowp, taps, ntaps, x, to);
}

__attribute__((target("avx2"))) static void row_avx2(float *out, const float *pad, const float *taps, int ntaps, int from, int to) {
  int x = from;
  for (; x + 16 <= to; x += 16) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int k = 0; k < ntaps; k++) {
      __m256 c = _mm256_set1_ps(taps[k]);
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(pad + x + k), c));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(pad + x + k + 8), c));
    }
    _mm256_storeu_ps(out + x, a0);
    _mm256_storeu_ps(out + x + 8, a1);
  }
  for (; x + 8 <= to; x += 8) {
    __m256 a0 = _mm256_setzero_ps();
    for (int k = 0; k < ntaps; k++) a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(pad + x + k), _mm256_set1_ps(taps[k])));
    _mm256_storeu_ps(out + x, a0);
  }
  row_scalar(out, pad, taps, ntaps, x, to);
}

__attribute__((target("avx512f"))) static void column_avx512(float *out, const float *const *rowp, const float *taps, int ntaps,
                                                             int from, int to) {
  int x = from;
  for (; x + 32 <= to; x += 32) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int k = 0; k < ntaps; k++) {
      __m512 c = _mm512_set1_ps(taps[k]);
      a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_loadu_ps(rowp[k] + x), c));
      a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_loadu_ps(rowp[k] + x + 16), c));
    }
    _mm512_storeu_ps(out + x, a0);
    _mm512_storeu_ps(out + x + 16, a1);
  }
  for (; x < to; x += 16) {
    /* The last partial block through a mask: lanes past `to` are neither loaded nor stored. */
    __mmask16 m = to - x >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (to - x)) - 1);
    __m512 a0 = _mm512_setzero_ps();
    for (int k = 0; k < ntaps; k++) a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, rowp[k] + x), _mm512_set1_ps(taps[k])));
    _mm512_mask_storeu_ps(out + x, m, a0);
  }
}

__attribute__((target("avx512f"))) static void row_avx512(float *out, const float *pad, const float *taps, int ntaps, int from,
                                                          int to) {
  int x = from;
  for (; x + 32 <= to; x += 32) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int k = 0; k < ntaps; k++) {
      __m512 c = _mm512_set1_ps(taps[k]);
      a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_loadu_ps(pad + x + k), c));
      a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_loadu_ps(pad + x + k + 16), c));
    }
    _mm512_storeu_ps(out + x, a0);
    _mm512_storeu_ps(out + x + 16, a1);
  }
  for (; x < to; x += 16) {
    __mmask16 m = to - x >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (to - x)) - 1);
    __m512 a0 = _mm512_setzero_ps();
    for (int k = 0; k < ntaps; k++) a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, pad + x + k), _mm512_set1_ps(taps[k])));
    _mm512_mask_storeu_ps(out + x, m, a0);
  }
}
#endif

/* The best kernel this CPU and OS can run (__builtin_cpu_supports checks CPUID and, for AVX and
 * AVX-512, that the OS saves the wider registers). */
static int best_kernel(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return IS_SIFT_AVX512;
  if (__builtin_cpu_supports("avx2")) return IS_SIFT_AVX2;
#endif
  return IS_SIFT_SCALAR;
}

typedef struct {
  column_kernel column;
  row_kernel row;
  float *taps;      /* 2 * max_radius + 1 */
  const float **rowp; /* 2 * max_radius + 1 row pointers */
  float *pad;       /* longest row plus 2 * max_radius */
  int max_radius;
} smoother;

/* Smooths a w x h image by sigma into out (which may be in); temp holds w x h floats. Returns 0,
 * or IS_SIFT_OUT_OF_MEMORY when its buffers cannot grow for a wider kernel. */
static int smooth(smoother *sm, float *out, float *temp, const float *in, int w, int h, double sigma) {
  /* _vl_sift_smooth's filter: width max(ceil(4 sigma), 1), values in float, exp in double. */
  int r = (int)VL_MAX(ceil(4.0 * sigma), 1);
  if (r > sm->max_radius) {
    int grown = 2 * r;
    float *taps = realloc(sm->taps, sizeof(float) * (size_t)(2 * grown + 1));
    if (taps == NULL) return IS_SIFT_OUT_OF_MEMORY;
    sm->taps = taps;
    const float **rowp = realloc((void *)sm->rowp, sizeof(float *) * (size_t)(2 * grown + 1));
    if (rowp == NULL) return IS_SIFT_OUT_OF_MEMORY;
    sm->rowp = rowp;
    float *pad = malloc(sizeof(float) * ((size_t)VL_MAX(w, h) + (size_t)(2 * grown) + 16));
    if (pad == NULL) return IS_SIFT_OUT_OF_MEMORY;
    free(sm->pad);
    sm->pad = pad;
    sm->max_radius = grown;
  }
  int ntaps = 2 * r + 1;
  float filter[ntaps];
  float acc = 0;
  for (int j = 0; j < ntaps; j++) {
    float d = ((float)(j - r)) / ((float)sigma);
    filter[j] = (float)exp(-0.5 * (d * d));
    acc += filter[j];
  }
  for (int j = 0; j < ntaps; j++) filter[j] /= acc;
  /* vl_imconvcol_vf points at the filter's last sample and walks it backwards. */
  for (int k = 0; k < ntaps; k++) sm->taps[k] = filter[ntaps - 1 - k];

  /* Down the columns: in -> temp. */
  for (int y = 0; y < h; y++) {
    for (int k = 0; k < ntaps; k++) {
      int sy = y - r + k;
      sy = sy < 0 ? 0 : sy >= h ? h - 1 : sy;
      sm->rowp[k] = in + (size_t)sy * w;
    }
    sm->column(temp + (size_t)y * w, sm->rowp, sm->taps, ntaps, 0, w);
  }
  /* Along the rows: temp -> out, each row padded by its end values. */
  float *pad = sm->pad;
  for (int y = 0; y < h; y++) {
    const float *row = temp + (size_t)y * w;
    for (int i = 0; i < r; i++) pad[i] = row[0];
    memcpy(pad + r, row, sizeof(float) * (size_t)w);
    for (int i = 0; i < r; i++) pad[r + w + i] = row[w - 1];
    sm->row(out + (size_t)y * w, pad, sm->taps, ntaps, 0, w);
  }
  return 0;
}

/* copy_and_upsample_rows applied twice (VLFeat doubles the rows, transposing, twice): linear
 * interpolation, the last sample repeated. in is w x h, out 2w x 2h. */
static void upsample2(float *out, float *temp, const float *in, int w, int h) {
  int W = 2 * w;
  for (int y = 0; y < h; y++) {
    const float *s = in + (size_t)y * w;
    float *t = temp + (size_t)y * W;
    for (int x = 0; x < w - 1; x++) {
      t[2 * x] = s[x];
      t[2 * x + 1] = (float)(0.5 * (s[x] + s[x + 1]));
    }
    t[W - 2] = s[w - 1];
    t[W - 1] = s[w - 1];
  }
  for (int y = 0; y < h; y++) {
    const float *a = temp + (size_t)y * W, *b = y + 1 < h ? a + W : a;
    float *o0 = out + (size_t)(2 * y) * W, *o1 = o0 + W;
    for (int x = 0; x < W; x++) {
      o0[x] = a[x];
      o1[x] = y + 1 < h ? (float)(0.5 * (a[x] + b[x])) : a[x];
    }
  }
}

/* copy_and_downsample: every 2^d-th sample of every 2^d-th row, into an ow x oh image. */
static void downsample(float *out, const float *in, int w, int ow, int oh, int d) {
  int step = 1 << d;
  for (int y = 0; y < oh; y++) {
    const float *s = in + (size_t)y * step * w;
    for (int x = 0; x < ow; x++) out[(size_t)y * ow + x] = s[(size_t)x * step];
  }
}

static int octave_width(const VlSiftFilt *f, int o) { return VL_SHIFT_LEFT(f->width, -o); }
static int octave_height(const VlSiftFilt *f, int o) { return VL_SHIFT_LEFT(f->height, -o); }

/* Fills levels s_min..s_max of octave o into `octave` (levels of w x h, s_min first), as
 * vl_sift_process_first_octave (o == o_min, from the image) or vl_sift_process_next_octave (from
 * level s_best of the previous octave, `previous`, of pw x ph) do. */
static int build_octave(smoother *sm, const VlSiftFilt *f, int o, float *octave, float *temp, const float *image,
                        const float *previous, int pw) {
  int w = octave_width(f, o), h = octave_height(f, o);
  size_t nel = (size_t)w * h;
  int s_min = f->s_min, s_max = f->s_max, S = f->S;
  double sigma0 = f->sigma0, sigmak = f->sigmak, dsigma0 = f->dsigma0;
  double sa, sb;
  if (o == f->o_min) {
    if (o < 0) {
      upsample2(octave, temp, image, f->width, f->height); /* first_octave >= -1: one doubling */
    } else if (o > 0) {
      downsample(octave, image, f->width, w, h, o);
    } else {
      memcpy(octave, image, sizeof(float) * nel);
    }
    sa = sigma0 * pow(sigmak, s_min);
    sb = f->sigman * pow(2.0, -o);
  } else {
    int s_best = VL_MIN(s_min + S, s_max);
    downsample(octave, previous, pw, w, h, 1);
    /* VLFeat's next_octave computes these with powf, in float: repeated so that sa > sb decides alike. */
    sa = sigma0 * powf((float)sigmak, (float)s_min);
    sb = sigma0 * powf((float)sigmak, (float)(s_best - S));
  }
  if (sa > sb) {
    double sd = sqrt(sa * sa - sb * sb);
    int err = smooth(sm, octave, temp, octave, w, h, sd);
    if (err != 0) return err;
  }
  for (int s = s_min + 1; s <= s_max; s++) {
    double sd = dsigma0 * pow(sigmak, s);
    int err = smooth(sm, octave + nel * (size_t)(s - s_min), temp, octave + nel * (size_t)(s - s_min - 1), w, h, sd);
    if (err != 0) return err;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Candidates and output.
 * --------------------------------------------------------------------------------------------- */

typedef struct {
  float x, y, sigma, angle, strength;
  int order; /* detection order: the tie-break, so both paths keep the same features */
  float descriptor[128];
} candidate;

static int by_strength_desc(const void *a, const void *b) {
  const candidate *ca = a, *cb = b;
  if (ca->strength != cb->strength) return ca->strength < cb->strength ? 1 : -1;
  return (ca->order > cb->order) - (ca->order < cb->order);
}

/* A fast-path candidate: the keypoint is kept so that its descriptor can be computed later. */
typedef struct {
  VlSiftKeypoint key;
  double angle;
  float strength;
  int order;
} pending;

static int pending_by_strength_desc(const void *a, const void *b) {
  const pending *pa = a, *pb = b;
  if (pa->strength != pb->strength) return pa->strength < pb->strength ? 1 : -1;
  return (pa->order > pb->order) - (pa->order < pb->order);
}

/* |DoG| at the keypoint's integer extremum in the filter's current DoG. */
static float strength_of(const VlSiftFilt *f, const VlSiftKeypoint *k) {
  int ow = f->octave_width, oh = f->octave_height, s_min = f->s_min;
  if (k->ix >= 0 && k->ix < ow && k->iy >= 0 && k->iy < oh && k->is - s_min >= 0 && k->is - s_min < f->s_max - s_min) {
    return fabsf(f->dog[(size_t)(k->is - s_min) * ow * oh + (size_t)k->iy * ow + k->ix]);
  }
  return 0;
}

static void write_frame(float *frame, unsigned char *out, float x, float y, float sigma, float angle, const float *descriptor) {
  frame[0] = x;
  frame[1] = y;
  frame[2] = sigma;
  frame[3] = angle;
  for (int d = 0; d < 128; d++) {
    float v = 512.0f * descriptor[d];
    out[d] = (unsigned char)(v >= 255.0f ? 255 : (int)(v + 0.5f));
  }
}

/* Grows an array of `size`-byte items to hold one more; returns 0 or IS_SIFT_OUT_OF_MEMORY. */
static int reserve(void **items, size_t *capacity, size_t count, size_t size) {
  if (count < *capacity) return 0;
  void *grown = realloc(*items, 2 * *capacity * size);
  if (grown == NULL) return IS_SIFT_OUT_OF_MEMORY;
  *items = grown;
  *capacity *= 2;
  return 0;
}

/* VLFeat's own pipeline: its scale space, a descriptor for every orientation, then the strongest. */
static int extract_reference(VlSiftFilt *filter, const float *image, int max_features, float *frames, unsigned char *descriptors) {
  size_t count = 0, capacity = 256;
  candidate *all = malloc(capacity * sizeof(candidate));
  int status = all == NULL ? IS_SIFT_OUT_OF_MEMORY : 0;
  int order = 0;

  int err = status == 0 ? vl_sift_process_first_octave(filter, image) : VL_ERR_EOF;
  while (status == 0 && err != VL_ERR_EOF) {
    vl_sift_detect(filter);
    const VlSiftKeypoint *keys = vl_sift_get_keypoints(filter);
    int nkeys = vl_sift_get_nkeypoints(filter);
    for (int i = 0; i < nkeys && status == 0; i++) {
      const VlSiftKeypoint *k = &keys[i];
      float strength = strength_of(filter, k);
      double angles[4];
      int nangles = vl_sift_calc_keypoint_orientations(filter, angles, k);
      for (int a = 0; a < nangles; a++) {
        if ((status = reserve((void **)&all, &capacity, count, sizeof(candidate))) != 0) break;
        candidate *c = &all[count++];
        c->x = k->x;
        c->y = k->y;
        c->sigma = k->sigma;
        c->angle = (float)angles[a];
        c->strength = strength;
        c->order = order++;
        /* VLFeat returns without writing for a keypoint on the last row (its orientation takes
         * it, its descriptor does not): the feature keeps an all-zero descriptor. */
        memset(c->descriptor, 0, sizeof c->descriptor);
        vl_sift_calc_keypoint_descriptor(filter, c->descriptor, k, angles[a]);
      }
    }
    err = vl_sift_process_next_octave(filter);
  }

  if (status != 0) {
    free(all);
    return status;
  }
  qsort(all, count, sizeof(candidate), by_strength_desc);
  int n = count < (size_t)max_features ? (int)count : max_features;
  for (int i = 0; i < n; i++) {
    write_frame(&frames[4 * i], &descriptors[128 * i], all[i].x, all[i].y, all[i].sigma, all[i].angle, all[i].descriptor);
  }
  free(all);
  return n;
}

/* ------------------------------------------------------------------------------------------------
 * The descriptor, as vl_sift_calc_keypoint_descriptor (0.9.21) computes it, bit for bit.
 *
 * Each gradient sample in the keypoint's window is weighted and added to up to 8 of the 128 bins.
 * The float sums must be made in VLFeat's order (rows, then columns; a sample's 8 bins differ, so
 * their order does not matter), so only the per-sample arithmetic is vectorised: the AVX-512 and
 * AVX2 kernels compute 8 samples' bins and weights in the same float and double steps as VLFeat's
 * C (each step an IEEE operation, rounded alike in every lane), then add them sample by sample
 * into a histogram padded by one spatial bin, where the bins VLFeat's bounds tests reject land.
 * Samples that reach no bin (half of the square window: its corners lie outside the rotated
 * patch) are skipped before their weight is computed; VLFeat computes and discards them.
 * mathop.h's inline helpers (vl_floor_f, vl_mod_2pi_f, vl_fast_sqrt_f) are compiled here from
 * VLFeat's own header.
 * --------------------------------------------------------------------------------------------- */

#define NBO 8
#define NBP 4
#define EXPN_SZ 256
#define EXPN_MAX 25.0

/* sift.c's fast_expn table (not exported by libvl); one spare entry past VLFeat's, which its
 * fast_expn would read only for an argument of exactly EXPN_MAX. */
static double expn_table[EXPN_SZ + 2];
static pthread_once_t expn_once = PTHREAD_ONCE_INIT;

static void expn_init(void) {
  for (int k = 0; k < EXPN_SZ + 1; ++k) expn_table[k] = exp(-(double)k * (EXPN_MAX / EXPN_SZ));
  expn_table[EXPN_SZ + 1] = 0;
}

static inline double fast_expn(double x) {
  if (x > EXPN_MAX) return 0.0;
  x *= EXPN_SZ / EXPN_MAX;
  int i = (int)vl_floor_d(x);
  double r = x - i;
  double a = expn_table[i], b = expn_table[i + 1];
  return a + r * (b - a);
}

static float normalize_histogram(float *begin, float *end) {
  float norm = 0.0f;
  for (float *it = begin; it != end; ++it) norm += (*it) * (*it);
  norm = vl_fast_sqrt_f(norm) + VL_EPSILON_F;
  for (float *it = begin; it != end; ++it) *it /= norm;
  return norm;
}

/* The keypoint's geometry, as vl_sift_calc_keypoint_descriptor derives it. */
typedef struct {
  double x, y, st0, ct0, SBP;
  int xi, yi, W, w, h;
  const float *pt; /* gradient (modulus, angle) pairs at the keypoint */
} window;

/* Returns 0 where VLFeat would return without touching the descriptor. */
static int descriptor_window(const VlSiftFilt *f, const VlSiftKeypoint *k, double angle0, window *win) {
  double const magnif = f->magnif;
  double xper = pow(2.0, f->o_cur);
  int w = f->octave_width, h = f->octave_height;
  double x = k->x / xper, y = k->y / xper, sigma = k->sigma / xper;
  int xi = (int)(x + 0.5), yi = (int)(y + 0.5), si = k->is;
  double const SBP = magnif * sigma + VL_EPSILON_D;
  if (k->o != f->o_cur || xi < 0 || xi >= w || yi < 0 || yi >= h - 1 || si < f->s_min + 1 || si > f->s_max - 2) return 0;
  win->x = x;
  win->y = y;
  win->st0 = sin(angle0);
  win->ct0 = cos(angle0);
  win->SBP = SBP;
  win->xi = xi;
  win->yi = yi;
  win->W = (int)floor(sqrt(2.0) * SBP * (NBP + 1) / 2.0 + 0.5);
  win->w = w;
  win->h = h;
  win->pt = f->grad + xi * 2 + yi * 2 * w + (size_t)(si - f->s_min - 1) * 2 * w * h;
  return 1;
}

/* Normalised, truncated at 0.2, normalised again (norm_thresh as VLFeat applies it). */
static void finish_descriptor(const VlSiftFilt *f, float *descr) {
  float norm = normalize_histogram(descr, descr + NBO * NBP * NBP);
  if (f->norm_thresh && norm < f->norm_thresh) {
    for (int bin = 0; bin < NBO * NBP * NBP; ++bin) descr[bin] = 0;
  } else {
    for (int bin = 0; bin < NBO * NBP * NBP; ++bin) {
      if (descr[bin] > 0.2) descr[bin] = 0.2;
    }
    normalize_histogram(descr, descr + NBO * NBP * NBP);
  }
}

/* Adds one sample's weights to the bins, in VLFeat's order. dpt points at bin (0, 0, 0) of the
 * centred histogram (NBP/2 bins in from the corner). */
static inline void distribute(float *dpt, int binx, int biny, int bint, float wm, float rbinx, float rbiny, float rbint) {
  for (int dbinx = 0; dbinx < 2; ++dbinx) {
    for (int dbiny = 0; dbiny < 2; ++dbiny) {
      for (int dbint = 0; dbint < 2; ++dbint) {
        if (binx + dbinx >= -(NBP / 2) && binx + dbinx < (NBP / 2) && biny + dbiny >= -(NBP / 2) && biny + dbiny < (NBP / 2)) {
          float weight = wm * vl_abs_f(1 - dbinx - rbinx) * vl_abs_f(1 - dbiny - rbiny) * vl_abs_f(1 - dbint - rbint);
          dpt[((bint + dbint) % NBO) + (biny + dbiny) * NBO * NBP + (binx + dbinx) * NBO] += weight;
        }
      }
    }
  }
}

/* A sample reaches some bin only if binx and biny are both in [-NBP/2 - 1, NBP/2 - 1]. */
static inline int reaches_a_bin(int binx, int biny) {
  return binx >= -(NBP / 2) - 1 && binx < NBP / 2 && biny >= -(NBP / 2) - 1 && biny < NBP / 2;
}

static void descriptor_scalar(const VlSiftFilt *f, float *descr, const VlSiftKeypoint *k, double angle0) {
  window g;
  if (!descriptor_window(f, k, angle0, &g)) return;
  memset(descr, 0, sizeof(float) * NBO * NBP * NBP);
  float *dpt = descr + (NBP / 2) * NBO * NBP + (NBP / 2) * NBO;
  float const wsigma = (float)f->windowSize;
  for (int dyi = VL_MAX(-g.W, 1 - g.yi); dyi <= VL_MIN(+g.W, g.h - g.yi - 2); ++dyi) {
    for (int dxi = VL_MAX(-g.W, 1 - g.xi); dxi <= VL_MIN(+g.W, g.w - g.xi - 2); ++dxi) {
      float dx = g.xi + dxi - g.x;
      float dy = g.yi + dyi - g.y;
      float nx = (g.ct0 * dx + g.st0 * dy) / g.SBP;
      float ny = (-g.st0 * dx + g.ct0 * dy) / g.SBP;
      int binx = (int)vl_floor_f(nx - 0.5);
      int biny = (int)vl_floor_f(ny - 0.5);
      if (!reaches_a_bin(binx, biny)) continue;
      float mod = *(g.pt + dxi * 2 + dyi * 2 * g.w + 0);
      float angle = *(g.pt + dxi * 2 + dyi * 2 * g.w + 1);
      float theta = vl_mod_2pi_f(angle - angle0);
      float nt = NBO * theta / (2 * VL_PI);
      float win = fast_expn((nx * nx + ny * ny) / (2.0 * wsigma * wsigma));
      int bint = (int)vl_floor_f(nt);
      float rbinx = nx - (binx + 0.5);
      float rbiny = ny - (biny + 0.5);
      float rbint = nt - bint;
      distribute(dpt, binx, biny, bint, win * mod, rbinx, rbiny, rbint);
    }
  }
  finish_descriptor(f, descr);
}

#if defined(__x86_64__)
/* The SIMD descriptors accumulate into a histogram padded by one spatial bin on every side, so
 * samples whose bins fall outside the 4x4 patch land in the border instead of needing tests. */
enum { PAD_Y = (NBP + 2) * NBO };

/* Adds the 8 weights of each sample whose bit is set in `reach`, in lane (VLFeat's sample) order;
 * a sample's 8 adds go to 8 different bins. */
static inline void scatter_samples(float *hist, unsigned reach, float weights[8][8], const int *bases, const int *t0s, const int *t1s) {
  for (unsigned m = reach; m; m &= m - 1) {
    int l = __builtin_ctz(m);
    float *h = hist + bases[l];
    int t0 = t0s[l], t1 = t1s[l];
    h[t0] += weights[0][l];
    h[t1] += weights[1][l];
    h[PAD_Y + t0] += weights[2][l];
    h[PAD_Y + t1] += weights[3][l];
    h[NBO + t0] += weights[4][l];
    h[NBO + t1] += weights[5][l];
    h[NBO + PAD_Y + t0] += weights[6][l];
    h[NBO + PAD_Y + t1] += weights[7][l];
  }
}

/* The 4x4x8 descriptor without the padding border. */
static inline void unpad_histogram(float *descr, const float *hist) {
  for (int by = 0; by < NBP; by++) {
    for (int bx = 0; bx < NBP; bx++) memcpy(descr + by * NBO * NBP + bx * NBO, hist + (by + 1) * PAD_Y + (bx + 1) * NBO, sizeof(float) * NBO);
  }
}

/* descriptor_avx512's steps with AVX2: the 8 samples' doubles in two 4-lane halves, masks as
 * vectors. */
__attribute__((target("avx2"))) static inline __m256 pd2_to_ps(__m256d lo, __m256d hi) {
  return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

__attribute__((target("avx2"))) static void descriptor_avx2(const VlSiftFilt *f, float *descr, const VlSiftKeypoint *k, double angle0) {
  window g;
  if (!descriptor_window(f, k, angle0, &g)) return;
  float const wsigma = (float)f->windowSize;
  double const window_den = 2.0 * wsigma * wsigma;
  const __m256d ct0 = _mm256_set1_pd(g.ct0), nst0 = _mm256_set1_pd(-g.st0), SBP = _mm256_set1_pd(g.SBP);
  const __m256d half = _mm256_set1_pd(0.5), xk = _mm256_set1_pd(g.x), zero_d = _mm256_setzero_pd();
  const __m256d lane_lo = _mm256_set_pd(3, 2, 1, 0), lane_hi = _mm256_set_pd(7, 6, 5, 4);
  const __m256d two_pi_d = _mm256_set1_pd(2 * VL_PI), den = _mm256_set1_pd(window_den), expn_max = _mm256_set1_pd(EXPN_MAX);
  const __m256d expn_scale = _mm256_set1_pd(EXPN_SZ / EXPN_MAX);
  const __m256 two_pi_f = _mm256_set1_ps((float)(2 * VL_PI)), zero_f = _mm256_setzero_ps();
  const __m256i lane_i = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
  int x_from = VL_MAX(-g.W, 1 - g.xi), x_to = VL_MIN(+g.W, g.w - g.xi - 2);
  float hist[(NBP + 2) * (NBP + 2) * NBO] __attribute__((aligned(64)));
  memset(hist, 0, sizeof hist);
  float weights[8][8] __attribute__((aligned(32)));
  int bases[8] __attribute__((aligned(32))), t0s[8] __attribute__((aligned(32))), t1s[8] __attribute__((aligned(32)));
  const __m256 one_f = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  const __m256i seven = _mm256_set1_epi32(NBO - 1), three = _mm256_set1_epi32(NBP / 2 + 1), four = _mm256_set1_epi32(NBP);
  for (int dyi = VL_MAX(-g.W, 1 - g.yi); dyi <= VL_MIN(+g.W, g.h - g.yi - 2); ++dyi) {
    float dyf = g.yi + dyi - g.y;
    const __m256d st0dy = _mm256_set1_pd(g.st0 * dyf), ct0dy = _mm256_set1_pd(g.ct0 * dyf);
    const float *row = g.pt + dyi * 2 * g.w;
    for (int dxi0 = x_from; dxi0 <= x_to; dxi0 += 8) {
      int n = VL_MIN(8, x_to - dxi0 + 1);
      unsigned valid = (1u << n) - 1;
      __m256d base_x = _mm256_set1_pd((double)(g.xi + dxi0));
      __m256d dx0 = _mm256_cvtps_pd(_mm256_cvtpd_ps(_mm256_sub_pd(_mm256_add_pd(base_x, lane_lo), xk)));
      __m256d dx1 = _mm256_cvtps_pd(_mm256_cvtpd_ps(_mm256_sub_pd(_mm256_add_pd(base_x, lane_hi), xk)));
      __m256 nx = pd2_to_ps(_mm256_div_pd(_mm256_add_pd(_mm256_mul_pd(ct0, dx0), st0dy), SBP),
                            _mm256_div_pd(_mm256_add_pd(_mm256_mul_pd(ct0, dx1), st0dy), SBP));
      __m256 ny = pd2_to_ps(_mm256_div_pd(_mm256_add_pd(_mm256_mul_pd(nst0, dx0), ct0dy), SBP),
                            _mm256_div_pd(_mm256_add_pd(_mm256_mul_pd(nst0, dx1), ct0dy), SBP));
      __m256d nx0 = _mm256_cvtps_pd(_mm256_castps256_ps128(nx)), nx1 = _mm256_cvtps_pd(_mm256_extractf128_ps(nx, 1));
      __m256d ny0 = _mm256_cvtps_pd(_mm256_castps256_ps128(ny)), ny1 = _mm256_cvtps_pd(_mm256_extractf128_ps(ny, 1));
      __m256i binx = _mm256_cvttps_epi32(_mm256_floor_ps(pd2_to_ps(_mm256_sub_pd(nx0, half), _mm256_sub_pd(nx1, half))));
      __m256i biny = _mm256_cvttps_epi32(_mm256_floor_ps(pd2_to_ps(_mm256_sub_pd(ny0, half), _mm256_sub_pd(ny1, half))));
      __m256i ox = _mm256_add_epi32(binx, three), oy = _mm256_add_epi32(biny, three);
      __m256i out_x = _mm256_or_si256(_mm256_cmpgt_epi32(ox, four), _mm256_cmpgt_epi32(_mm256_setzero_si256(), ox));
      __m256i out_y = _mm256_or_si256(_mm256_cmpgt_epi32(oy, four), _mm256_cmpgt_epi32(_mm256_setzero_si256(), oy));
      unsigned reach = valid & ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(out_x, out_y)));
      if (reach == 0) continue;

      /* (mod, angle) pairs: two 8-float loads (masked past the row's last sample), de-interleaved. */
      __m256i m_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n), lane_i);
      __m256i m_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n - 8), lane_i);
      __m256 a = _mm256_maskload_ps(row + 2 * dxi0, m_lo), b = _mm256_maskload_ps(row + 2 * dxi0 + 8, m_hi);
      __m256 mod = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
      __m256 angle = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
      __m256d a0 = _mm256_set1_pd(angle0);
      __m256 theta = pd2_to_ps(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(angle)), a0),
                               _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(angle, 1)), a0));
      for (__m256 m = _mm256_cmp_ps(theta, two_pi_f, _CMP_GT_OQ); _mm256_movemask_ps(m); m = _mm256_cmp_ps(theta, two_pi_f, _CMP_GT_OQ)) {
        theta = _mm256_blendv_ps(theta, _mm256_sub_ps(theta, two_pi_f), m);
      }
      for (__m256 m = _mm256_cmp_ps(theta, zero_f, _CMP_LT_OQ); _mm256_movemask_ps(m); m = _mm256_cmp_ps(theta, zero_f, _CMP_LT_OQ)) {
        theta = _mm256_blendv_ps(theta, _mm256_add_ps(theta, two_pi_f), m);
      }
      __m256 nt8 = _mm256_mul_ps(_mm256_set1_ps(NBO), theta);
      __m256 nt = pd2_to_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(nt8)), two_pi_d),
                            _mm256_div_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(nt8, 1)), two_pi_d));
      /* win = (float)fast_expn(...), per half; lanes past EXPN_MAX read entry 0 and give 0. */
      __m256 r2 = _mm256_add_ps(_mm256_mul_ps(nx, nx), _mm256_mul_ps(ny, ny));
      __m256d ex[2];
      for (int part = 0; part < 2; part++) {
        __m256d e = _mm256_div_pd(_mm256_cvtps_pd(part == 0 ? _mm256_castps256_ps128(r2) : _mm256_extractf128_ps(r2, 1)), den);
        __m256d in_table = _mm256_cmp_pd(e, expn_max, _CMP_LE_OQ);
        e = _mm256_blendv_pd(zero_d, _mm256_mul_pd(e, expn_scale), in_table);
        __m128i ei = _mm256_cvttpd_epi32(e);
        __m256d r = _mm256_sub_pd(e, _mm256_cvtepi32_pd(ei));
        __m256d ta = _mm256_i32gather_pd(expn_table, ei, 8), tb = _mm256_i32gather_pd(expn_table + 1, ei, 8);
        ex[part] = _mm256_and_pd(_mm256_add_pd(ta, _mm256_mul_pd(r, _mm256_sub_pd(tb, ta))), in_table);
      }
      __m256 win = pd2_to_ps(ex[0], ex[1]);
      __m256i bint = _mm256_cvttps_epi32(_mm256_floor_ps(nt));
      __m256d bx0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(binx)), bx1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(binx, 1));
      __m256d by0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(biny)), by1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(biny, 1));
      __m256 rbinx = pd2_to_ps(_mm256_sub_pd(nx0, _mm256_add_pd(bx0, half)), _mm256_sub_pd(nx1, _mm256_add_pd(bx1, half)));
      __m256 rbiny = pd2_to_ps(_mm256_sub_pd(ny0, _mm256_add_pd(by0, half)), _mm256_sub_pd(ny1, _mm256_add_pd(by1, half)));
      __m256 rbint = _mm256_sub_ps(nt, _mm256_cvtepi32_ps(bint));
      __m256 wm = _mm256_mul_ps(win, mod);
      __m256 ax0 = _mm256_andnot_ps(sign, _mm256_sub_ps(one_f, rbinx)), ax1 = _mm256_andnot_ps(sign, rbinx);
      __m256 ay0 = _mm256_andnot_ps(sign, _mm256_sub_ps(one_f, rbiny)), ay1 = _mm256_andnot_ps(sign, rbiny);
      __m256 at0 = _mm256_andnot_ps(sign, _mm256_sub_ps(one_f, rbint)), at1 = _mm256_andnot_ps(sign, rbint);
      __m256 p0 = _mm256_mul_ps(wm, ax0), p1 = _mm256_mul_ps(wm, ax1);
      __m256 q00 = _mm256_mul_ps(p0, ay0), q01 = _mm256_mul_ps(p0, ay1), q10 = _mm256_mul_ps(p1, ay0), q11 = _mm256_mul_ps(p1, ay1);
      _mm256_store_ps(weights[0], _mm256_mul_ps(q00, at0));
      _mm256_store_ps(weights[1], _mm256_mul_ps(q00, at1));
      _mm256_store_ps(weights[2], _mm256_mul_ps(q01, at0));
      _mm256_store_ps(weights[3], _mm256_mul_ps(q01, at1));
      _mm256_store_ps(weights[4], _mm256_mul_ps(q10, at0));
      _mm256_store_ps(weights[5], _mm256_mul_ps(q10, at1));
      _mm256_store_ps(weights[6], _mm256_mul_ps(q11, at0));
      _mm256_store_ps(weights[7], _mm256_mul_ps(q11, at1));
      _mm256_store_si256((__m256i *)bases, _mm256_add_epi32(_mm256_slli_epi32(ox, 3), _mm256_mullo_epi32(oy, _mm256_set1_epi32(PAD_Y))));
      _mm256_store_si256((__m256i *)t0s, _mm256_and_si256(bint, seven));
      _mm256_store_si256((__m256i *)t1s, _mm256_and_si256(_mm256_add_epi32(bint, _mm256_set1_epi32(1)), seven));
      scatter_samples(hist, reach, weights, bases, t0s, t1s);
    }
  }
  unpad_histogram(descr, hist);
  finish_descriptor(f, descr);
}

__attribute__((target("avx512f,avx512vl"))) static void descriptor_avx512(const VlSiftFilt *f, float *descr, const VlSiftKeypoint *k,
                                                                 double angle0) {
  window g;
  if (!descriptor_window(f, k, angle0, &g)) return;
  float const wsigma = (float)f->windowSize;
  double const window_den = 2.0 * wsigma * wsigma;
  const __m512d ct0 = _mm512_set1_pd(g.ct0), nst0 = _mm512_set1_pd(-g.st0), SBP = _mm512_set1_pd(g.SBP);
  const __m512d half = _mm512_set1_pd(0.5), xk = _mm512_set1_pd(g.x);
  const __m512d lane = _mm512_set_pd(7, 6, 5, 4, 3, 2, 1, 0);
  /* (mod, angle) pairs of 8 samples -> mods in lanes 0-7, angles in lanes 8-15. */
  const __m512i deinterleave = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m256 two_pi_f = _mm256_set1_ps((float)(2 * VL_PI)), zero_f = _mm256_setzero_ps();
  int x_from = VL_MAX(-g.W, 1 - g.xi), x_to = VL_MIN(+g.W, g.w - g.xi - 2);
  /* The histogram with a border of one spatial bin on every side (6 x 6 x 8): the bins a sample
   * misses in VLFeat's bounds tests fall in the border, so the adds need no tests. */
  float hist[(NBP + 2) * (NBP + 2) * NBO] __attribute__((aligned(64)));
  memset(hist, 0, sizeof hist);
  float weights[8][8] __attribute__((aligned(32)));
  int bases[8] __attribute__((aligned(32))), t0s[8] __attribute__((aligned(32))), t1s[8] __attribute__((aligned(32)));
  const __m256 one_f = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  const __m256i seven = _mm256_set1_epi32(NBO - 1);
  for (int dyi = VL_MAX(-g.W, 1 - g.yi); dyi <= VL_MIN(+g.W, g.h - g.yi - 2); ++dyi) {
    float dyf = g.yi + dyi - g.y;
    double const st0dy = g.st0 * dyf, ct0dy = g.ct0 * dyf;
    const float *row = g.pt + dyi * 2 * g.w;
    for (int dxi0 = x_from; dxi0 <= x_to; dxi0 += 8) {
      int n = VL_MIN(8, x_to - dxi0 + 1);
      __mmask8 valid = (__mmask8)((1u << n) - 1);
      /* dx = (float)((xi + dxi) - x), then back to double for the products. */
      __m512d ix = _mm512_add_pd(_mm512_set1_pd((double)(g.xi + dxi0)), lane);
      __m512d dx = _mm512_cvtps_pd(_mm512_cvtpd_ps(_mm512_sub_pd(ix, xk)));
      __m256 nx = _mm512_cvtpd_ps(_mm512_div_pd(_mm512_add_pd(_mm512_mul_pd(ct0, dx), _mm512_set1_pd(st0dy)), SBP));
      __m256 ny = _mm512_cvtpd_ps(_mm512_div_pd(_mm512_add_pd(_mm512_mul_pd(nst0, dx), _mm512_set1_pd(ct0dy)), SBP));
      __m512d nxd = _mm512_cvtps_pd(nx), nyd = _mm512_cvtps_pd(ny);
      __m256 fx = _mm256_floor_ps(_mm512_cvtpd_ps(_mm512_sub_pd(nxd, half)));
      __m256 fy = _mm256_floor_ps(_mm512_cvtpd_ps(_mm512_sub_pd(nyd, half)));
      __m256i binx = _mm256_cvttps_epi32(fx), biny = _mm256_cvttps_epi32(fy);
      /* binx, biny in [-3, 1]: unsigned (bin + 3) <= 4. */
      __m256i three = _mm256_set1_epi32(NBP / 2 + 1), four = _mm256_set1_epi32(NBP);
      __m256i ox = _mm256_add_epi32(binx, three), oy = _mm256_add_epi32(biny, three);
      __mmask8 reach = valid & _mm256_cmple_epu32_mask(ox, four) & _mm256_cmple_epu32_mask(oy, four);
      if (reach == 0) continue;

      __m512 pairs = _mm512_permutexvar_ps(deinterleave, _mm512_maskz_loadu_ps((__mmask16)((1u << (2 * n)) - 1), row + 2 * dxi0));
      __m256 mod = _mm512_castps512_ps256(pairs);
      __m256 angle = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(pairs), 1));
      /* theta = vl_mod_2pi_f((float)(angle - angle0)): the same subtractions, lane by lane. */
      __m256 theta = _mm512_cvtpd_ps(_mm512_sub_pd(_mm512_cvtps_pd(angle), _mm512_set1_pd(angle0)));
      for (__mmask8 m = _mm256_cmp_ps_mask(theta, two_pi_f, _CMP_GT_OQ); m; m = _mm256_cmp_ps_mask(theta, two_pi_f, _CMP_GT_OQ)) {
        theta = _mm256_mask_sub_ps(theta, m, theta, two_pi_f);
      }
      for (__mmask8 m = _mm256_cmp_ps_mask(theta, zero_f, _CMP_LT_OQ); m; m = _mm256_cmp_ps_mask(theta, zero_f, _CMP_LT_OQ)) {
        theta = _mm256_mask_add_ps(theta, m, theta, two_pi_f);
      }
      /* nt = (float)((float)(NBO * theta) / (2 pi)) */
      __m256 nt = _mm512_cvtpd_ps(_mm512_div_pd(_mm512_cvtps_pd(_mm256_mul_ps(_mm256_set1_ps(NBO), theta)), _mm512_set1_pd(2 * VL_PI)));
      /* win = (float)fast_expn((double)(nx * nx + ny * ny) / (2.0 * wsigma * wsigma)) */
      __m512d e = _mm512_div_pd(_mm512_cvtps_pd(_mm256_add_ps(_mm256_mul_ps(nx, nx), _mm256_mul_ps(ny, ny))), _mm512_set1_pd(window_den));
      __mmask8 in_table = _mm512_cmp_pd_mask(e, _mm512_set1_pd(EXPN_MAX), _CMP_LE_OQ);
      e = _mm512_mul_pd(e, _mm512_set1_pd(EXPN_SZ / EXPN_MAX));
      __m256i ei = _mm512_maskz_cvttpd_epi32(in_table, e); /* e >= 0: truncation is vl_floor_d */
      __m512d r = _mm512_sub_pd(e, _mm512_cvtepi32_pd(ei));
      __m512d a = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), in_table, ei, expn_table, 8);
      __m512d b = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), in_table, _mm256_add_epi32(ei, _mm256_set1_epi32(1)), expn_table, 8);
      __m512d ex = _mm512_maskz_add_pd(in_table, a, _mm512_mul_pd(r, _mm512_sub_pd(b, a)));
      __m256 win = _mm512_cvtpd_ps(ex);
      __m256 fnt = _mm256_floor_ps(nt);
      __m256i bint = _mm256_cvttps_epi32(fnt);
      /* rbin = (float)(n - (bin + 0.5)) in double; rbint = nt - bint in float. */
      __m256 rbinx = _mm512_cvtpd_ps(_mm512_sub_pd(nxd, _mm512_add_pd(_mm512_cvtepi32_pd(binx), half)));
      __m256 rbiny = _mm512_cvtpd_ps(_mm512_sub_pd(nyd, _mm512_add_pd(_mm512_cvtepi32_pd(biny), half)));
      __m256 rbint = _mm256_sub_ps(nt, _mm256_cvtepi32_ps(bint));
      /* The 8 weights, ((((win * mod) * |1 - dbinx - rbinx|) * |1 - dbiny - rbiny|) * |1 - dbint - rbint|)
       * in VLFeat's order of products; 1 - 1 - r is 0 - r, whose absolute value is |r|. */
      __m256 wm = _mm256_mul_ps(win, mod);
      __m256 ax0 = _mm256_andnot_ps(sign, _mm256_sub_ps(one_f, rbinx)), ax1 = _mm256_andnot_ps(sign, rbinx);
      __m256 ay0 = _mm256_andnot_ps(sign, _mm256_sub_ps(one_f, rbiny)), ay1 = _mm256_andnot_ps(sign, rbiny);
      __m256 at0 = _mm256_andnot_ps(sign, _mm256_sub_ps(one_f, rbint)), at1 = _mm256_andnot_ps(sign, rbint);
      __m256 p0 = _mm256_mul_ps(wm, ax0), p1 = _mm256_mul_ps(wm, ax1);
      __m256 q00 = _mm256_mul_ps(p0, ay0), q01 = _mm256_mul_ps(p0, ay1), q10 = _mm256_mul_ps(p1, ay0), q11 = _mm256_mul_ps(p1, ay1);
      _mm256_store_ps(weights[0], _mm256_mul_ps(q00, at0));
      _mm256_store_ps(weights[1], _mm256_mul_ps(q00, at1));
      _mm256_store_ps(weights[2], _mm256_mul_ps(q01, at0));
      _mm256_store_ps(weights[3], _mm256_mul_ps(q01, at1));
      _mm256_store_ps(weights[4], _mm256_mul_ps(q10, at0));
      _mm256_store_ps(weights[5], _mm256_mul_ps(q10, at1));
      _mm256_store_ps(weights[6], _mm256_mul_ps(q11, at0));
      _mm256_store_ps(weights[7], _mm256_mul_ps(q11, at1));
      /* Padded histogram offsets: spatial bin (bx, by) in [-3, 2]^2 at (bx + 3) * 8 + (by + 3) * 48. */
      __m256i base = _mm256_add_epi32(_mm256_slli_epi32(ox, 3), _mm256_mullo_epi32(oy, _mm256_set1_epi32(PAD_Y)));
      _mm256_store_si256((__m256i *)bases, base);
      _mm256_store_si256((__m256i *)t0s, _mm256_and_si256(bint, seven));
      _mm256_store_si256((__m256i *)t1s, _mm256_and_si256(_mm256_add_epi32(bint, _mm256_set1_epi32(1)), seven));
      /* Samples in VLFeat's order; a sample's 8 adds go to 8 different bins, so their order among
       * themselves does not matter, and out-of-patch bins land in the padding. */
      scatter_samples(hist, reach, weights, bases, t0s, t1s);
    }
  }
  unpad_histogram(descr, hist);
  finish_descriptor(f, descr);
}
#endif

/* ------------------------------------------------------------------------------------------------
 * The gradient of an octave, as VLFeat's static update_gradient computes it: for levels s_min+1
 * .. s_max-2, (modulus, angle) pairs of central differences (one-sided at the borders), through
 * mathop.h's vl_fast_sqrt_f and vl_fast_atan2_f. The AVX-512 and AVX2 kernels repeat those float steps
 * lane by lane (the bit trick of vl_fast_resqrt_f included), so the pairs are equal bit for bit.
 * --------------------------------------------------------------------------------------------- */

static inline void gradient_pair(float *out, float gx, float gy) {
  out[0] = vl_fast_sqrt_f(gx * gx + gy * gy);
  out[1] = vl_mod_2pi_f(vl_fast_atan2_f(gy, gx) + 2 * VL_PI);
}

/* Pairs for columns [from, to) of one row; up/down are the rows above and below (the row itself
 * at the image's top and bottom), gy_scale 0.5 between two rows, else 1. */
static void gradient_row_scalar(float *out, const float *row, const float *up, const float *down, float gy_scale, int from, int to) {
  for (int x = from; x < to; x++) {
    float gx = 0.5 * (row[x + 1] - row[x - 1]);
    float gy = gy_scale * (down[x] - up[x]);
    gradient_pair(out + 2 * x, gx, gy);
  }
}

typedef void (*gradient_row_kernel)(float *out, const float *row, const float *up, const float *down, float gy_scale, int from, int to);

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void gradient_row_avx512(float *out, const float *row, const float *up, const float *down,
                                                                   float gy_scale, int from, int to) {
  const __m512 half = _mm512_set1_ps(0.5f), scale = _mm512_set1_ps(gy_scale), zero = _mm512_setzero_ps();
  const __m512 eps = _mm512_set1_ps(VL_EPSILON_F), c3 = _mm512_set1_ps(0.1821F), c1 = _mm512_set1_ps(0.9675F);
  const __m512 quarter_pi = _mm512_set1_ps((float)(VL_PI / 4)), three_quarter_pi = _mm512_set1_ps((float)(3 * VL_PI / 4));
  const __m512 one_half = _mm512_set1_ps(1.5f), two_pi_f = _mm512_set1_ps((float)(2 * VL_PI));
  const __m512d two_pi = _mm512_set1_pd(2 * VL_PI);
  /* vl_fast_sqrt_f's test, (double)x < 1e-8, as a float comparison. */
  const float tiny = (float)1e-8;
  const int tiny_inclusive = (double)tiny < 1e-8;
  const __m512 tiny_v = _mm512_set1_ps(tiny);
  const __m512i to_lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i to_hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  int x = from;
  for (; x + 16 <= to; x += 16) {
    __m512 gx = _mm512_mul_ps(half, _mm512_sub_ps(_mm512_loadu_ps(row + x + 1), _mm512_loadu_ps(row + x - 1)));
    __m512 gy = _mm512_mul_ps(scale, _mm512_sub_ps(_mm512_loadu_ps(down + x), _mm512_loadu_ps(up + x)));
    /* vl_fast_sqrt_f(gx * gx + gy * gy) */
    __m512 m2 = _mm512_add_ps(_mm512_mul_ps(gx, gx), _mm512_mul_ps(gy, gy));
    __m512 xhalf = _mm512_mul_ps(half, m2);
    __m512 y = _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_set1_epi32(0x5f3759df), _mm512_srai_epi32(_mm512_castps_si512(m2), 1)));
    y = _mm512_mul_ps(y, _mm512_sub_ps(one_half, _mm512_mul_ps(_mm512_mul_ps(xhalf, y), y)));
    y = _mm512_mul_ps(y, _mm512_sub_ps(one_half, _mm512_mul_ps(_mm512_mul_ps(xhalf, y), y)));
    __mmask16 is_tiny = tiny_inclusive ? _mm512_cmp_ps_mask(m2, tiny_v, _CMP_LE_OQ) : _mm512_cmp_ps_mask(m2, tiny_v, _CMP_LT_OQ);
    __m512 mod = _mm512_mask_mov_ps(_mm512_mul_ps(m2, y), is_tiny, zero);
    /* vl_fast_atan2_f(gy, gx) */
    __m512 abs_y = _mm512_add_ps(_mm512_abs_ps(gy), eps);
    __mmask16 x_pos = _mm512_cmp_ps_mask(gx, zero, _CMP_GE_OQ);
    __m512 num = _mm512_mask_blend_ps(x_pos, _mm512_add_ps(gx, abs_y), _mm512_sub_ps(gx, abs_y));
    __m512 den = _mm512_mask_blend_ps(x_pos, _mm512_sub_ps(abs_y, gx), _mm512_add_ps(gx, abs_y));
    __m512 r = _mm512_div_ps(num, den);
    __m512 angle = _mm512_mask_blend_ps(x_pos, three_quarter_pi, quarter_pi);
    angle = _mm512_add_ps(angle, _mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_mul_ps(c3, r), r), c1), r));
    __mmask16 y_neg = _mm512_cmp_ps_mask(gy, zero, _CMP_LT_OQ);
    angle = _mm512_castsi512_ps(_mm512_mask_xor_epi32(_mm512_castps_si512(angle), y_neg, _mm512_castps_si512(angle),
                                                      _mm512_set1_epi32((int)0x80000000)));
    /* vl_mod_2pi_f((float)((double)angle + 2 pi)) */
    __m256 lo = _mm512_cvtpd_ps(_mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(angle)), two_pi));
    __m256 hi = _mm512_cvtpd_ps(
        _mm512_add_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(angle), 1))), two_pi));
    __m512 theta = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
    for (__mmask16 m = _mm512_cmp_ps_mask(theta, two_pi_f, _CMP_GT_OQ); m; m = _mm512_cmp_ps_mask(theta, two_pi_f, _CMP_GT_OQ)) {
      theta = _mm512_mask_sub_ps(theta, m, theta, two_pi_f);
    }
    for (__mmask16 m = _mm512_cmp_ps_mask(theta, zero, _CMP_LT_OQ); m; m = _mm512_cmp_ps_mask(theta, zero, _CMP_LT_OQ)) {
      theta = _mm512_mask_add_ps(theta, m, theta, two_pi_f);
    }
    _mm512_storeu_ps(out + 2 * x, _mm512_permutex2var_ps(mod, to_lo, theta));
    _mm512_storeu_ps(out + 2 * x + 16, _mm512_permutex2var_ps(mod, to_hi, theta));
  }
  gradient_row_scalar(out, row, up, down, gy_scale, x, to);
}
#endif

#if defined(__x86_64__)
/* gradient_row_avx512 in 8 lanes, masks as vectors (AVX2 has no mask registers). */
__attribute__((target("avx2"))) static void gradient_row_avx2(float *out, const float *row, const float *up, const float *down,
                                                              float gy_scale, int from, int to) {
  const __m256 half = _mm256_set1_ps(0.5f), scale = _mm256_set1_ps(gy_scale), zero = _mm256_setzero_ps();
  const __m256 eps = _mm256_set1_ps(VL_EPSILON_F), c3 = _mm256_set1_ps(0.1821F), c1 = _mm256_set1_ps(0.9675F);
  const __m256 quarter_pi = _mm256_set1_ps((float)(VL_PI / 4)), three_quarter_pi = _mm256_set1_ps((float)(3 * VL_PI / 4));
  const __m256 one_half = _mm256_set1_ps(1.5f), two_pi_f = _mm256_set1_ps((float)(2 * VL_PI)), sign = _mm256_set1_ps(-0.0f);
  const __m256d two_pi = _mm256_set1_pd(2 * VL_PI);
  const float tiny = (float)1e-8;
  const __m256 tiny_v = _mm256_set1_ps(tiny);
  const int tiny_inclusive = (double)tiny < 1e-8;
  int x = from;
  for (; x + 8 <= to; x += 8) {
    __m256 gx = _mm256_mul_ps(half, _mm256_sub_ps(_mm256_loadu_ps(row + x + 1), _mm256_loadu_ps(row + x - 1)));
    __m256 gy = _mm256_mul_ps(scale, _mm256_sub_ps(_mm256_loadu_ps(down + x), _mm256_loadu_ps(up + x)));
    __m256 m2 = _mm256_add_ps(_mm256_mul_ps(gx, gx), _mm256_mul_ps(gy, gy));
    __m256 xhalf = _mm256_mul_ps(half, m2);
    __m256 y = _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_set1_epi32(0x5f3759df), _mm256_srai_epi32(_mm256_castps_si256(m2), 1)));
    y = _mm256_mul_ps(y, _mm256_sub_ps(one_half, _mm256_mul_ps(_mm256_mul_ps(xhalf, y), y)));
    y = _mm256_mul_ps(y, _mm256_sub_ps(one_half, _mm256_mul_ps(_mm256_mul_ps(xhalf, y), y)));
    __m256 is_tiny = tiny_inclusive ? _mm256_cmp_ps(m2, tiny_v, _CMP_LE_OQ) : _mm256_cmp_ps(m2, tiny_v, _CMP_LT_OQ);
    __m256 mod = _mm256_blendv_ps(_mm256_mul_ps(m2, y), zero, is_tiny);
    __m256 abs_y = _mm256_add_ps(_mm256_andnot_ps(sign, gy), eps);
    __m256 x_pos = _mm256_cmp_ps(gx, zero, _CMP_GE_OQ);
    __m256 num = _mm256_blendv_ps(_mm256_add_ps(gx, abs_y), _mm256_sub_ps(gx, abs_y), x_pos);
    __m256 den = _mm256_blendv_ps(_mm256_sub_ps(abs_y, gx), _mm256_add_ps(gx, abs_y), x_pos);
    __m256 r = _mm256_div_ps(num, den);
    __m256 angle = _mm256_blendv_ps(three_quarter_pi, quarter_pi, x_pos);
    angle = _mm256_add_ps(angle, _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(c3, r), r), c1), r));
    angle = _mm256_xor_ps(angle, _mm256_and_ps(_mm256_cmp_ps(gy, zero, _CMP_LT_OQ), sign));
    __m128 lo = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(angle)), two_pi));
    __m128 hi = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(angle, 1)), two_pi));
    __m256 theta = _mm256_set_m128(hi, lo);
    for (__m256 m = _mm256_cmp_ps(theta, two_pi_f, _CMP_GT_OQ); _mm256_movemask_ps(m); m = _mm256_cmp_ps(theta, two_pi_f, _CMP_GT_OQ)) {
      theta = _mm256_blendv_ps(theta, _mm256_sub_ps(theta, two_pi_f), m);
    }
    for (__m256 m = _mm256_cmp_ps(theta, zero, _CMP_LT_OQ); _mm256_movemask_ps(m); m = _mm256_cmp_ps(theta, zero, _CMP_LT_OQ)) {
      theta = _mm256_blendv_ps(theta, _mm256_add_ps(theta, two_pi_f), m);
    }
    __m256 a = _mm256_unpacklo_ps(mod, theta), b = _mm256_unpackhi_ps(mod, theta);
    _mm256_storeu_ps(out + 2 * x, _mm256_permute2f128_ps(a, b, 0x20));
    _mm256_storeu_ps(out + 2 * x + 8, _mm256_permute2f128_ps(a, b, 0x31));
  }
  gradient_row_scalar(out, row, up, down, gy_scale, x, to);
}
#endif

/* Fills f->grad for the current octave (w, h >= 2) and marks it current, as update_gradient does. */
static void compute_gradient(VlSiftFilt *f, gradient_row_kernel kernel) {
  int w = f->octave_width, h = f->octave_height;
  size_t so = (size_t)w * h;
  for (int s = f->s_min + 1; s <= f->s_max - 2; ++s) {
    const float *src = f->octave + so * (size_t)(s - f->s_min);
    float *grad = f->grad + 2 * so * (size_t)(s - f->s_min - 1);
    for (int y = 0; y < h; y++) {
      const float *row = src + (size_t)y * w;
      const float *up = y > 0 ? row - w : row, *down = y < h - 1 ? row + w : row;
      float gy_scale = y > 0 && y < h - 1 ? 0.5f : 1.0f;
      float *out = grad + 2 * (size_t)y * w;
      /* The first and last columns take one-sided differences. In the first and last rows VLFeat
       * computes gy without the 0.5 factor; multiplying by 1 changes nothing. */
      gradient_pair(out, row[1] - row[0], gy_scale == 1.0f ? down[0] - up[0] : (float)(0.5 * (down[0] - up[0])));
      kernel(out, row, up, down, gy_scale, 1, w - 1);
      gradient_pair(out + 2 * (w - 1), row[w - 1] - row[w - 2],
                    gy_scale == 1.0f ? down[w - 1] - up[w - 1] : (float)(0.5 * (down[w - 1] - up[w - 1])));
    }
  }
  f->grad_o = f->o_cur;
}

/* Per-thread scratch for the fast path's scale space, gradients, DoG and smoothing buffer, kept
 * between calls: fresh multi-megabyte blocks each image cost page faults (10% of the time in a
 * profile). It only grows (about 12 MB for a 384 px image, first octave 0) and is freed when the
 * thread exits; a block above SCRATCH_KEEP_MAX (images beyond ~1000 px) is allocated per call and
 * freed after it instead, so that no thread keeps hundreds of megabytes. */
#define SCRATCH_KEEP_MAX ((size_t)96 << 20)
typedef struct {
  void *block;
  size_t size;
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_free(void *p) {
  scratch *s = p;
  free(s->block);
  free(s);
}

static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0; }

/* A block of at least size bytes, or NULL. *owned is set when the block must be freed by the
 * caller (no thread-specific storage). */
static void *scratch_get(size_t size, int *owned) {
  pthread_once(&scratch_once, scratch_init);
  *owned = 0;
  if (!scratch_key_ok || size > SCRATCH_KEEP_MAX) {
    *owned = 1;
    return malloc(size);
  }
  scratch *s = pthread_getspecific(scratch_key);
  if (s == NULL) {
    s = calloc(1, sizeof(scratch));
    if (s == NULL || pthread_setspecific(scratch_key, s) != 0) {
      free(s);
      *owned = 1;
      return malloc(size);
    }
  }
  if (s->size < size) {
    free(s->block);
    s->block = malloc(size);
    s->size = s->block == NULL ? 0 : size;
  }
  return s->block;
}

/* Points the filter at octave o of our buffers, as process_first/next_octave leave it. */
static void select_octave(VlSiftFilt *f, int o, float *octave, float *grad, int gradient_valid) {
  f->o_cur = o;
  f->octave_width = octave_width(f, o);
  f->octave_height = octave_height(f, o);
  f->octave = octave;
  f->grad = grad;
  /* update_gradient recomputes the gradient unless grad_o names the current octave. */
  f->grad_o = gradient_valid ? o : o - 1;
}

static int extract_fast(VlSiftFilt *filter, const float *image, int max_features, int kernel, float *frames,
                        unsigned char *descriptors) {
  int O = filter->O, o_min = filter->o_min;
  int levels = filter->s_max - filter->s_min + 1, dog_levels = filter->s_max - filter->s_min;
  smoother sm = {column_scalar, row_scalar, NULL, NULL, NULL, 0};
  void (*describe)(const VlSiftFilt *, float *, const VlSiftKeypoint *, double) = descriptor_scalar;
  gradient_row_kernel gradient_row = gradient_row_scalar;
  pthread_once(&expn_once, expn_init);
#if defined(__x86_64__)
  if (kernel >= IS_SIFT_AVX512) {
    sm.column = column_avx512;
    sm.row = row_avx512;
    describe = descriptor_avx512;
    gradient_row = gradient_row_avx512;
  } else if (kernel == IS_SIFT_AVX2) {
    sm.column = column_avx2;
    sm.row = row_avx2;
    gradient_row = gradient_row_avx2;
    describe = descriptor_avx2;
  }
#else
  (void)kernel;
#endif

  /* Every octave's scale space and gradient stay in memory (each octave a quarter of the one
   * before, so 4/3 of what VLFeat holds for one), so descriptors can wait until the strongest
   * keypoints are known. */
  size_t *offsets = calloc((size_t)O + 1, sizeof(size_t));
  size_t total = 0;
  for (int i = 0; offsets != NULL && i < O; i++) {
    offsets[i] = total;
    total += (size_t)octave_width(filter, o_min + i) * (size_t)octave_height(filter, o_min + i);
  }
  /* One block: every octave's levels and gradients, then the DoG and the smoothing's (and
   * upsample2's) buffer, both sized for the first octave as vl_sift_new sizes its own. */
  size_t first = (size_t)octave_width(filter, o_min) * (size_t)octave_height(filter, o_min);
  size_t floats = total * (size_t)levels + total * 2 * (size_t)dog_levels + first * (size_t)dog_levels + first;
  int owned = 0;
  float *pyramid = offsets == NULL ? NULL : scratch_get(sizeof(float) * floats, &owned);
  float *gradients = pyramid == NULL ? NULL : pyramid + total * (size_t)levels;
  float *dog = pyramid == NULL ? NULL : gradients + total * 2 * (size_t)dog_levels;
  float *temp = pyramid == NULL ? NULL : dog + first * (size_t)dog_levels;
  int *gradient_valid = calloc((size_t)O + 1, sizeof(int));
  size_t count = 0, capacity = 256;
  pending *all = malloc(capacity * sizeof(pending));
  float *vl_octave = filter->octave, *vl_grad = filter->grad, *vl_dog = filter->dog, *vl_temp = filter->temp;
  int status = pyramid == NULL || gradient_valid == NULL || all == NULL ? IS_SIFT_OUT_OF_MEMORY : 0;
  if (status == 0) {
    filter->dog = dog;
    filter->temp = temp;
  }

  int order = 0;
  for (int i = 0; status == 0 && i < O; i++) {
    int o = o_min + i, w = octave_width(filter, o), h = octave_height(filter, o);
    float *octave = pyramid + offsets[i] * (size_t)levels;
    float *grad = gradients + offsets[i] * 2 * (size_t)dog_levels;
    if (w < 1 || h < 1) break; /* nothing left to smooth; VLFeat would find no keypoint either */
    /* The next octave starts from level s_best of the previous one. */
    int s_best = VL_MIN(filter->s_min + filter->S, filter->s_max);
    const float *previous =
        i == 0 ? NULL
               : pyramid + offsets[i - 1] * (size_t)levels + (size_t)(s_best - filter->s_min) * (offsets[i] - offsets[i - 1]);
    status = build_octave(&sm, filter, o, octave, filter->temp, image, previous, octave_width(filter, o - 1));
    if (status != 0) break;
    select_octave(filter, o, octave, grad, 0);
    filter->nkeys = 0;
    if (w < 3 || h < 3) continue; /* no interior pixel, so no extremum */
    vl_sift_detect(filter);
    const VlSiftKeypoint *keys = vl_sift_get_keypoints(filter);
    int nkeys = vl_sift_get_nkeypoints(filter);
    if (nkeys > 0) compute_gradient(filter, gradient_row); /* what the first orientation would compute */
    for (int k = 0; k < nkeys && status == 0; k++) {
      float strength = strength_of(filter, &keys[k]);
      double angles[4];
      int nangles = vl_sift_calc_keypoint_orientations(filter, angles, &keys[k]);
      for (int a = 0; a < nangles; a++) {
        if ((status = reserve((void **)&all, &capacity, count, sizeof(pending))) != 0) break;
        pending *p = &all[count++];
        p->key = keys[k];
        p->angle = angles[a];
        p->strength = strength;
        p->order = order++;
      }
    }
    gradient_valid[i] = filter->grad_o == o;
  }

  int n = 0;
  if (status == 0) {
    qsort(all, count, sizeof(pending), pending_by_strength_desc);
    n = count < (size_t)max_features ? (int)count : max_features;
    int current = o_min - 1;
    for (int j = 0; j < n; j++) {
      const pending *p = &all[j];
      int i = p->key.o - o_min;
      if (p->key.o != current) {
        select_octave(filter, p->key.o, pyramid + offsets[i] * (size_t)levels, gradients + offsets[i] * 2 * (size_t)dog_levels,
                      gradient_valid[i]);
        current = p->key.o;
      }
      float descriptor[128];
      memset(descriptor, 0, sizeof descriptor); /* as in extract_reference: the last row gets none */
      if (gradient_valid[i]) {
        describe(filter, descriptor, &p->key, p->angle);
      } else {
        vl_sift_calc_keypoint_descriptor(filter, descriptor, &p->key, p->angle); /* brings the gradient up to date */
      }
      write_frame(&frames[4 * j], &descriptors[128 * j], p->key.x, p->key.y, p->key.sigma, (float)p->angle, descriptor);
    }
  }

  /* vl_sift_delete frees the filter's own buffers. */
  filter->octave = vl_octave;
  filter->grad = vl_grad;
  filter->dog = vl_dog;
  filter->temp = vl_temp;
  free(sm.taps);
  free((void *)sm.rowp);
  free(sm.pad);
  free(all);
  free(gradient_valid);
  if (owned) free(pyramid);
  free(offsets);
  return status != 0 ? status : n;
}

/* ------------------------------------------------------------------------------------------------
 * Descriptor matching: for every query descriptor, the nearest and second-nearest candidate
 * descriptor by squared Euclidean distance, as GeometricVerifier's reference loop finds them
 * (nearest: the smallest distance, the lowest candidate index among equal ones; second: the second
 * smallest of all the distances, which equals the nearest when two candidates tie).
 *
 * Exact integer arithmetic through dot products: |q - c|^2 = |q|^2 + |c|^2 - 2 q.c, and with
 * vpdpbusd (unsigned bytes times signed bytes, four products summed into each 32-bit lane)
 * q.c = c.(q - 128) + 128 sum(c), so that
 *   |q - c|^2 = |q|^2 + K(c) - 2 c.(q - 128),   K(c) = |c|^2 - 256 sum(c).
 * Every term is an integer below 2^24 (128 * 255^2 < 2^23), so nothing rounds or overflows and
 * the distances are the reference's, bit for bit.
 *
 * The candidate's descriptors are transposed into blocks of 16: for each group of 4 dimensions,
 * 64 bytes holding those 4 bytes of 16 candidates. One vpdpbusd then adds 4 dimensions of 16
 * candidates against one query's 4 bytes, broadcast from memory (no horizontal sums), and
 * MATCH_QUERIES query descriptors share each load of a candidate block. Each lane keeps its own
 * nearest (value and block), second nearest and, at the end, the 16 lanes are reduced.
 * --------------------------------------------------------------------------------------------- */

#define MATCH_LENGTH 128
#define MATCH_GROUPS (MATCH_LENGTH / 4)
#define MATCH_LANES 16
/* Query descriptors per pass: 8 accumulators plus 24 registers of per-lane state (measured: 6-12
 * run at the same speed, 4 is 15% slower, 2 is 70% slower). */
#define MATCH_QUERIES 8
/* K of a padding lane: above any real distance (< 2^23), so it is never the nearest or second. */
#define MATCH_PAD (1 << 29)

static int match_vnni_supported(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#else
  return 0;
#endif
}

#if defined(__x86_64__)
/* Transposes 16 rows of 16 dwords: out[g] holds dword g of every row (lane r = row r). */
__attribute__((target("avx512f"))) static inline void transpose16x16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  /* Per 128-bit lane k, u[4i + m] holds dword 4k + m of rows 4i..4i+3. */
  for (int i = 0; i < 4; i++) {
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  /* A 4x4 transpose of 128-bit lanes for each m. */
  for (int m = 0; m < 4; m++) {
    __m512i v0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44), v1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xEE);
    __m512i v2 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44), v3 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xEE);
    r[m] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    r[4 + m] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    r[8 + m] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    r[12 + m] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
}

/* Lays candidate block b out as MATCH_GROUPS vectors of 16 lanes x 4 bytes (which is also AMX's
 * layout of a B tile: row g holds bytes 4g..4g+3 of each of 16 candidates) and computes its K:
 * c.c - 256 sum(c) for the VNNI kernel's shifted query, or c.c itself (squared) for AMX's
 * unsigned products. A lane past the last candidate gets MATCH_PAD. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void match_prepare_block(const unsigned char *candidates, int nc, int b,
                                                                                     __m512i *blocks, int32_t *k, int squared) {
  static const unsigned char zero[MATCH_LENGTH] __attribute__((aligned(64)));
  __m512i lo[16], hi[16];
  for (int r = 0; r < 16; r++) {
    int j = b * MATCH_LANES + r;
    const unsigned char *row = j < nc ? candidates + (size_t)j * MATCH_LENGTH : zero;
    lo[r] = _mm512_loadu_si512(row);
    hi[r] = _mm512_loadu_si512(row + 64);
  }
  transpose16x16(lo);
  transpose16x16(hi);
  const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
  __m512i cc = _mm512_setzero_si512(), sum = _mm512_setzero_si512();
  __m512i *out = blocks + (size_t)b * MATCH_GROUPS;
  for (int g = 0; g < 16; g++) {
    out[g] = lo[g];
    out[16 + g] = hi[g];
    /* c.(c - 128) and sum(c), lane by lane: K = c.(c - 128) - 128 sum(c). */
    cc = _mm512_dpbusd_epi32(cc, lo[g], _mm512_xor_si512(lo[g], flip));
    cc = _mm512_dpbusd_epi32(cc, hi[g], _mm512_xor_si512(hi[g], flip));
    sum = _mm512_dpbusd_epi32(sum, lo[g], ones);
    sum = _mm512_dpbusd_epi32(sum, hi[g], ones);
  }
  __m512i kv = squared ? _mm512_add_epi32(cc, _mm512_slli_epi32(sum, 7)) : _mm512_sub_epi32(cc, _mm512_slli_epi32(sum, 7));
  int real = nc - b * MATCH_LANES;
  __mmask16 live = real >= MATCH_LANES ? (__mmask16)0xFFFF : real <= 0 ? (__mmask16)0 : (__mmask16)((1u << real) - 1);
  _mm512_storeu_si512(k + b * MATCH_LANES, _mm512_mask_mov_epi32(_mm512_set1_epi32(MATCH_PAD), live, kv));
}

/* |q|^2 of one descriptor, with VNNI's unsigned-times-signed products: q.(q - 128) + 128 sum(q). */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static inline int32_t match_norm(__m512i a, __m512i b) {
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  __m512i qq = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), a, _mm512_xor_si512(a, flip)), b, _mm512_xor_si512(b, flip));
  __m512i s = _mm512_add_epi64(_mm512_sad_epu8(a, _mm512_setzero_si512()), _mm512_sad_epu8(b, _mm512_setzero_si512()));
  return _mm512_reduce_add_epi32(qq) + 128 * (int32_t)_mm512_reduce_add_epi64(s);
}

/* The query as signed bytes (q - 128, padded to whole passes with zeros) and |q|^2 per descriptor. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void match_prepare_query(const unsigned char *query, int nq, int padded,
                                                                                     unsigned char *shifted, int32_t *norm) {
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int i = 0; i < nq; i++) {
    const unsigned char *q = query + (size_t)i * MATCH_LENGTH;
    __m512i a = _mm512_loadu_si512(q), b = _mm512_loadu_si512(q + 64);
    __m512i sa = _mm512_xor_si512(a, flip), sb = _mm512_xor_si512(b, flip);
    _mm512_storeu_si512(shifted + (size_t)i * MATCH_LENGTH, sa);
    _mm512_storeu_si512(shifted + (size_t)i * MATCH_LENGTH + 64, sb);
    norm[i] = match_norm(a, b);
  }
  memset(shifted + (size_t)nq * MATCH_LENGTH, 0, (size_t)(padded - nq) * MATCH_LENGTH);
}

/* One query's result from its per-lane state: the nearest over lanes, the lowest candidate index
 * among equal nearest values; the second is the smallest of every lane's second and every other
 * lane's nearest. from holds, per lane, the first candidate of the block where the lane's nearest
 * was seen. */
__attribute__((target("avx512f,avx512bw"))) static inline void match_finish(__m512i near, __m512i next, __m512i from, int32_t norm,
                                                                          int *best, int *best_index, int *second) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int32_t nearest = _mm512_reduce_min_epi32(near);
  __m512i index = _mm512_add_epi32(from, lane);
  __mmask16 equal = _mm512_cmpeq_epi32_mask(near, _mm512_set1_epi32(nearest));
  int32_t chosen = _mm512_reduce_min_epi32(_mm512_mask_mov_epi32(_mm512_set1_epi32(INT32_MAX), equal, index));
  __mmask16 others = (__mmask16)~_mm512_cmpeq_epi32_mask(index, _mm512_set1_epi32(chosen));
  int32_t runner = _mm512_reduce_min_epi32(_mm512_mask_min_epi32(next, others, next, near));
  *best = norm + nearest;
  *best_index = chosen;
  *second = norm + runner;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void match_vnni(const unsigned char *query, int nq, const unsigned char *candidates,
                                                                            int nc, void *scratch, int *best, int *best_index, int *second) {
  int blocks_n = (nc + MATCH_LANES - 1) / MATCH_LANES;
  int padded = (nq + MATCH_QUERIES - 1) / MATCH_QUERIES * MATCH_QUERIES;
  __m512i *blocks = scratch;
  int32_t *k = (int32_t *)(blocks + (size_t)blocks_n * MATCH_GROUPS);
  unsigned char *shifted = (unsigned char *)(k + (size_t)blocks_n * MATCH_LANES);
  int32_t *norm = (int32_t *)(shifted + (size_t)padded * MATCH_LENGTH);
  for (int b = 0; b < blocks_n; b++) {
    match_prepare_block(candidates, nc, b, blocks, k, 0);
  }
  match_prepare_query(query, nq, padded, shifted, norm);

  const __m512i none = _mm512_set1_epi32(INT32_MAX);
  for (int i0 = 0; i0 < nq; i0 += MATCH_QUERIES) {
    /* Per lane: the smallest e = K - 2 c.(q - 128) so far, the first block where it was seen, the second smallest. */
    __m512i near[MATCH_QUERIES], from[MATCH_QUERIES], next[MATCH_QUERIES];
    for (int u = 0; u < MATCH_QUERIES; u++) {
      near[u] = none;
      next[u] = none;
      from[u] = _mm512_setzero_si512();
    }
    const int32_t *q = (const int32_t *)(shifted + (size_t)i0 * MATCH_LENGTH);
    for (int b = 0; b < blocks_n; b++) {
      __m512i acc[MATCH_QUERIES];
      for (int u = 0; u < MATCH_QUERIES; u++) acc[u] = _mm512_setzero_si512();
      const __m512i *block = blocks + (size_t)b * MATCH_GROUPS;
      for (int g = 0; g < MATCH_GROUPS; g++) {
        __m512i c = _mm512_load_si512(block + g);
        for (int u = 0; u < MATCH_QUERIES; u++) {
          acc[u] = _mm512_dpbusd_epi32(acc[u], c, _mm512_set1_epi32(q[u * MATCH_GROUPS + g]));
        }
      }
      __m512i kb = _mm512_loadu_si512(k + b * MATCH_LANES), first = _mm512_set1_epi32(b * MATCH_LANES);
      for (int u = 0; u < MATCH_QUERIES; u++) {
        __m512i e = _mm512_sub_epi32(kb, _mm512_add_epi32(acc[u], acc[u]));
        /* Strictly smaller replaces the nearest (an equal later one does not: the lowest index wins);
         * the second becomes min(second, max(nearest, e)), which is the old nearest when e replaces it. */
        __mmask16 closer = _mm512_cmplt_epi32_mask(e, near[u]);
        next[u] = _mm512_min_epi32(next[u], _mm512_max_epi32(near[u], e));
        near[u] = _mm512_min_epi32(near[u], e);
        from[u] = _mm512_mask_mov_epi32(from[u], closer, first);
      }
    }
    for (int u = 0; u < MATCH_QUERIES && i0 + u < nq; u++) {
      match_finish(near[u], next[u], from[u], norm[i0 + u], &best[i0 + u], &best_index[i0 + u], &second[i0 + u]);
    }
  }
}

/* ------------------------------------------------------------------------------------------------
 * The same search with AMX (Intel Advanced Matrix Extensions, Sapphire Rapids and later): the
 * products q.c of a block of 32 query descriptors with every candidate come from TDPBUUD (unsigned
 * bytes times unsigned bytes into 32-bit sums, exact: at most 128 x 255 x 255 < 2^24), 16 x 16 at a
 * time, and only the running nearest two are kept with AVX-512, in the VNNI kernel's order (blocks
 * of 16 candidates in index order, per lane: a strictly smaller value replaces), so both kernels
 * return the same indices on ties. e = c.c - 2 q.c is the VNNI kernel's e: the results are equal.
 *
 * Where the tiles may be used. Linux hands AMX's 8 KB of tile state to a process only on request
 * (arch_prctl ARCH_REQ_XCOMP_PERM, kernel 5.16+), and from a thread's first tile instruction on,
 * every signal frame of that thread carries the tile state (~12 KB in all here). The .NET runtime
 * handles a null reference as a SIGSEGV on a 16 KB alternate signal stack, which such a frame
 * overflows: a .NET process died that way when its own threads ran this kernel (docs/BENCHMARKS.md).
 * So the tiles are used only on threads of this library's own: each calling thread gets one
 * worker thread, created with every signal blocked (no signal frame is ever built on it), that
 * runs the calls it is handed while the caller waits; a worker ends when its caller's thread
 * does. The runtime's threads never execute a tile instruction, so their signal frames keep their
 * size. A refused request, a CPU without AMX-INT8, or a worker that cannot be started leaves
 * matching on the VNNI kernel, on the calling thread.
 * --------------------------------------------------------------------------------------------- */
#define AMX_QUERIES 32
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static int amx_ok;
static pthread_key_t amx_worker_key;

static void amx_worker_release(void *worker);

static void amx_init(void) {
  unsigned a, b, c, d;
  if (!match_vnni_supported() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
  /* CPUID.(7,0):EDX bit 24 AMX-TILE, bit 25 AMX-INT8; CPUID.1:ECX bit 27 OSXSAVE; the OS enables
   * the tile state in XCR0 (bits 17 and 18). */
  if (!(d & (1u << 24)) || !(d & (1u << 25)) || !__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return;
  if (pthread_key_create(&amx_worker_key, amx_worker_release) != 0) return;
  unsigned long permitted = 0;
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0 ||
      syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &permitted) != 0) return;
  amx_ok = (permitted & (1ul << XFEATURE_XTILEDATA)) != 0;
}

static int match_amx_supported(void) {
  pthread_once(&amx_once, amx_init);
  return amx_ok;
}

/* LDTILECFG's 64-byte operand, palette 1. */
typedef struct {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed, aligned(64))) amx_config;

/* One call of is_sift_nearest2_many: the query against n candidate sets, results at i * nq. */
typedef struct {
  const unsigned char *query;
  int nq;
  const unsigned char *const *candidates;
  const int *counts;
  int n;
  int largest; /* the most descriptors in one set */
  int *best, *best_index, *second;
} match_job;

/* Tiles 0-3: the 2 x 2 blocks of products (16 queries x 16 candidates of int32); 4-5: two blocks of
 * 16 queries x 64 bytes; 6-7: two blocks of 16 candidates x 64 bytes, as 16 rows of 4-byte groups.
 * rows: the query padded with zero rows to whole blocks of AMX_QUERIES; norm: |q|^2 per query. */
__attribute__((target("avx512f,avx512bw,avx512vnni,amx-tile,amx-int8"))) static void match_amx(const unsigned char *rows, const int32_t *norm,
                                                                                             int nq, const unsigned char *candidates, int nc,
                                                                                             __m512i *blocks, int32_t *k, int32_t *dots,
                                                                                             int *best, int *best_index, int *second) {
  int pairs = (nc + 2 * MATCH_LANES - 1) / (2 * MATCH_LANES), blocks_n = 2 * pairs;
  int padded = (nq + AMX_QUERIES - 1) / AMX_QUERIES * AMX_QUERIES;
  int row = blocks_n * MATCH_LANES; /* int32 per row of products */
  for (int b = 0; b < blocks_n; b++) {
    match_prepare_block(candidates, nc, b, blocks, k, 1);
  }
  const size_t stride = (size_t)row * sizeof(int32_t);
  const __m512i none = _mm512_set1_epi32(INT32_MAX);
  for (int i0 = 0; i0 < padded; i0 += AMX_QUERIES) {
    const unsigned char *upper = rows + (size_t)i0 * MATCH_LENGTH, *lower = upper + (size_t)16 * MATCH_LENGTH;
    for (int p = 0; p < pairs; p++) {
      const __m512i *left = blocks + (size_t)(2 * p) * MATCH_GROUPS, *right = left + MATCH_GROUPS;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int half = 0; half < 2; half++) {
        _tile_loadd(4, upper + 64 * half, MATCH_LENGTH);
        _tile_loadd(5, lower + 64 * half, MATCH_LENGTH);
        _tile_loadd(6, left + 16 * half, 64);
        _tile_loadd(7, right + 16 * half, 64);
        _tile_dpbuud(0, 4, 6);
        _tile_dpbuud(1, 4, 7);
        _tile_dpbuud(2, 5, 6);
        _tile_dpbuud(3, 5, 7);
      }
      int32_t *at = dots + (size_t)(2 * p) * MATCH_LANES;
      _tile_stored(0, at, stride);
      _tile_stored(1, at + MATCH_LANES, stride);
      _tile_stored(2, at + (size_t)16 * row, stride);
      _tile_stored(3, at + (size_t)16 * row + MATCH_LANES, stride);
    }
    for (int u = 0; u < AMX_QUERIES && i0 + u < nq; u++) {
      const int32_t *d = dots + (size_t)u * row;
      __m512i near = none, next = none, from = _mm512_setzero_si512();
      for (int b = 0; b < blocks_n; b++) {
        __m512i c = _mm512_loadu_si512(d + b * MATCH_LANES);
        __m512i e = _mm512_sub_epi32(_mm512_loadu_si512(k + b * MATCH_LANES), _mm512_add_epi32(c, c));
        __mmask16 closer = _mm512_cmplt_epi32_mask(e, near);
        next = _mm512_min_epi32(next, _mm512_max_epi32(near, e));
        near = _mm512_min_epi32(near, e);
        from = _mm512_mask_mov_epi32(from, closer, _mm512_set1_epi32(b * MATCH_LANES));
      }
      match_finish(near, next, from, norm[i0 + u], &best[i0 + u], &best_index[i0 + u], &second[i0 + u]);
    }
  }
}

/* Runs a job with the tiles; only ever on a worker thread. Returns 0 or IS_SIFT_OUT_OF_MEMORY. */
__attribute__((target("avx512f,avx512bw,avx512vnni,amx-tile,amx-int8"))) static int match_amx_job(const match_job *job) {
  int nq = job->nq;
  size_t blocks_n = ((size_t)job->largest + 2 * MATCH_LANES - 1) / (2 * MATCH_LANES) * 2, row = blocks_n * MATCH_LANES;
  size_t padded = ((size_t)nq + AMX_QUERIES - 1) / AMX_QUERIES * AMX_QUERIES;
  /* Every part is a multiple of 64 bytes long, so each starts 64-byte aligned after the first. */
  size_t blocks_size = row * MATCH_LENGTH, k_size = (row * sizeof(int32_t) + 63) / 64 * 64, rows_size = padded * MATCH_LENGTH;
  size_t dots_size = AMX_QUERIES * row * sizeof(int32_t), norm_size = padded * sizeof(int32_t);
  int owned;
  char *raw = scratch_get(blocks_size + k_size + rows_size + dots_size + norm_size + 64, &owned);
  if (raw == NULL) {
    return IS_SIFT_OUT_OF_MEMORY;
  }
  char *base = (char *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
  __m512i *blocks = (__m512i *)base;
  int32_t *k = (int32_t *)(base + blocks_size);
  unsigned char *rows = (unsigned char *)k + k_size;
  int32_t *dots = (int32_t *)(rows + rows_size);
  int32_t *norm = (int32_t *)((char *)dots + dots_size);

  memcpy(rows, job->query, (size_t)nq * MATCH_LENGTH);
  memset(rows + (size_t)nq * MATCH_LENGTH, 0, (padded - (size_t)nq) * MATCH_LENGTH);
  for (int i = 0; i < nq; i++) {
    const unsigned char *q = job->query + (size_t)i * MATCH_LENGTH;
    norm[i] = match_norm(_mm512_loadu_si512(q), _mm512_loadu_si512(q + 64));
  }

  amx_config config;
  memset(&config, 0, sizeof config);
  config.palette = 1;
  for (int t = 0; t < 8; t++) {
    config.rows[t] = 16;
    config.colsb[t] = 64;
  }
  _tile_loadconfig(&config);
  for (int i = 0; i < job->n; i++) {
    size_t at = (size_t)i * nq;
    match_amx(rows, norm, nq, job->candidates[i], job->counts[i], blocks, k, dots, job->best + at, job->best_index + at, job->second + at);
  }
  _tile_release();
  if (owned) free(raw);
  return 0;
}

/* A worker thread and the one call it runs at a time; the calling thread waits for it. */
typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  const match_job *job; /* posted, not yet finished */
  int status;
  int quit;
} amx_worker;

/* Workers alive (is_sift_match_workers: tests check that they end with their callers). */
static int amx_workers;

static void *amx_worker_main(void *arg) {
  amx_worker *w = arg;
  __atomic_add_fetch(&amx_workers, 1, __ATOMIC_SEQ_CST);
  pthread_setname_np(pthread_self(), "sift-amx"); /* else it carries its creator's name */
  pthread_mutex_lock(&w->lock);
  for (;;) {
    while (w->job == NULL && !w->quit) pthread_cond_wait(&w->changed, &w->lock);
    if (w->job == NULL) break;
    const match_job *job = w->job;
    pthread_mutex_unlock(&w->lock);
    int status = match_amx_job(job);
    pthread_mutex_lock(&w->lock);
    w->status = status;
    w->job = NULL;
    pthread_cond_broadcast(&w->changed);
  }
  pthread_mutex_unlock(&w->lock);
  pthread_cond_destroy(&w->changed);
  pthread_mutex_destroy(&w->lock);
  free(w);
  __atomic_sub_fetch(&amx_workers, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* The calling thread is ending: its worker ends too (and frees itself). */
static void amx_worker_release(void *worker) {
  amx_worker *w = worker;
  pthread_mutex_lock(&w->lock);
  w->quit = 1;
  pthread_cond_broadcast(&w->changed);
  pthread_mutex_unlock(&w->lock);
}

/* The calling thread's worker, started on first use with every signal blocked; NULL if none can be. */
static amx_worker *amx_worker_get(void) {
  amx_worker *w = pthread_getspecific(amx_worker_key);
  if (w != NULL) return w;
  w = calloc(1, sizeof *w);
  if (w == NULL) return NULL;
  pthread_attr_t attr;
  sigset_t all, previous;
  pthread_t thread;
  int started = 0;
  if (pthread_mutex_init(&w->lock, NULL) == 0) {
    if (pthread_cond_init(&w->changed, NULL) == 0) {
      if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, (size_t)256 << 10);
        /* A new thread inherits the creator's signal mask: it starts with every signal blocked. */
        sigfillset(&all);
        if (pthread_sigmask(SIG_SETMASK, &all, &previous) == 0) {
          started = pthread_create(&thread, &attr, amx_worker_main, w) == 0;
          pthread_sigmask(SIG_SETMASK, &previous, NULL);
        }
        pthread_attr_destroy(&attr);
      }
      if (!started) pthread_cond_destroy(&w->changed);
    }
    if (!started) pthread_mutex_destroy(&w->lock);
  }
  if (!started) {
    free(w);
    return NULL;
  }
  if (pthread_setspecific(amx_worker_key, w) != 0) {
    amx_worker_release(w);
    return NULL;
  }
  return w;
}

/* Runs the job on the calling thread's worker. Returns its status, or 1 when no worker could run it. */
static int match_amx_on_worker(const match_job *job) {
  amx_worker *w = amx_worker_get();
  if (w == NULL) return 1;
  pthread_mutex_lock(&w->lock);
  w->job = job;
  pthread_cond_broadcast(&w->changed);
  while (w->job != NULL) pthread_cond_wait(&w->changed, &w->lock);
  int status = w->status;
  pthread_mutex_unlock(&w->lock);
  return status;
}
#endif

/* Bytes of scratch match_vnni needs. */
static size_t match_scratch_size(int nq, int nc) {
  size_t blocks_n = ((size_t)nc + MATCH_LANES - 1) / MATCH_LANES;
  size_t padded = ((size_t)nq + MATCH_QUERIES - 1) / MATCH_QUERIES * MATCH_QUERIES;
  return blocks_n * MATCH_LANES * MATCH_LENGTH + blocks_n * MATCH_LANES * sizeof(int32_t) + padded * MATCH_LENGTH +
         (size_t)nq * sizeof(int32_t);
}

IS_EXPORT int is_sift_version(void) { return 4; }

/* The kernel the fast path uses by default on this CPU (an is_sift_kernel value, 0..2). */
IS_EXPORT int is_sift_simd_level(void) { return best_kernel(); }

/* kernel: IS_SIFT_REFERENCE for VLFeat's own pipeline, IS_SIFT_DEFAULT for the fast path with the
 * best kernel, or a level (0 scalar, 1 AVX2, 2 AVX-512) that caps it (tests, benchmarks). */
IS_EXPORT int is_sift_extract(const float *image, int width, int height, int first_octave, double peak_threshold,
                              double edge_threshold, int max_features, int kernel, float *frames, unsigned char *descriptors) {
  if (image == NULL || width < 8 || height < 8 || max_features < 0 || frames == NULL || descriptors == NULL ||
      first_octave < -1 || first_octave > 4 || kernel < IS_SIFT_REFERENCE || kernel > IS_SIFT_AVX512) {
    return IS_SIFT_BAD_ARGUMENT;
  }

  VlSiftFilt *filter = vl_sift_new(width, height, -1, 3, first_octave);
  if (filter == NULL) {
    return IS_SIFT_OUT_OF_MEMORY;
  }
  vl_sift_set_peak_thresh(filter, peak_threshold);
  vl_sift_set_edge_thresh(filter, edge_threshold);

  int best = best_kernel();
  int result = kernel == IS_SIFT_REFERENCE
                   ? extract_reference(filter, image, max_features, frames, descriptors)
                   : extract_fast(filter, image, max_features, kernel == IS_SIFT_DEFAULT || kernel > best ? best : kernel, frames,
                                  descriptors);
  vl_sift_delete(filter);
  return result;
}

/* The match kernel is_sift_nearest2_many runs on this CPU by default: IS_SIFT_MATCH_AMX (AMX-INT8,
 * an OS that granted its tile state to this process, which the first call asks for), or
 * IS_SIFT_MATCH_VNNI (AVX-512 F, BW and VNNI), or 0 (neither: the caller matches another way). */
IS_EXPORT int is_sift_match_level(void) {
#if defined(__x86_64__)
  return match_amx_supported() ? IS_SIFT_MATCH_AMX : match_vnni_supported() ? IS_SIFT_MATCH_VNNI : 0;
#else
  return 0;
#endif
}

/* How many AMX worker threads are alive: one per thread that matched with AMX and has not ended. */
IS_EXPORT int is_sift_match_workers(void) {
#if defined(__x86_64__)
  return __atomic_load_n(&amx_workers, __ATOMIC_SEQ_CST);
#else
  return 0;
#endif
}

/* The query's nq descriptors (128 bytes each) against n candidate sets (candidates[i], counts[i]
 * >= 2 descriptors each): for query descriptor j and set i, at i * nq + j, the squared distance to
 * the set's nearest descriptor, that descriptor's index (the lowest among equal distances) and the
 * second smallest distance (equal to the nearest when two tie). level caps the kernel
 * (IS_SIFT_MATCH_VNNI or IS_SIFT_MATCH_AMX; one above is_sift_match_level runs the best there is);
 * every kernel gives the same results. Returns 0, or IS_SIFT_BAD_ARGUMENT (also when
 * is_sift_match_level is 0), or IS_SIFT_OUT_OF_MEMORY. */
IS_EXPORT int is_sift_nearest2_many(const unsigned char *query, int nq, const unsigned char *const *candidates, const int *counts, int n,
                                    int level, int *best, int *best_index, int *second) {
  int available = is_sift_match_level();
  if (query == NULL || candidates == NULL || counts == NULL || best == NULL || best_index == NULL || second == NULL || nq < 0 || n < 0 ||
      level < IS_SIFT_MATCH_VNNI || level > IS_SIFT_MATCH_AMX || available == 0) {
    return IS_SIFT_BAD_ARGUMENT;
  }
  int largest = 2;
  for (int i = 0; i < n; i++) {
    if (candidates[i] == NULL || counts[i] < 2) return IS_SIFT_BAD_ARGUMENT;
    if (counts[i] > largest) largest = counts[i];
  }
#if defined(__x86_64__)
  if (nq == 0 || n == 0) return 0;
  if (level == IS_SIFT_MATCH_AMX && available == IS_SIFT_MATCH_AMX) {
    match_job job = {query, nq, candidates, counts, n, largest, best, best_index, second};
    int status = match_amx_on_worker(&job);
    if (status <= 0) return status;
    /* No worker: the VNNI kernel, here. */
  }
  int owned;
  /* The scratch starts 64-byte aligned for the candidate blocks: malloc gives 16, so round up. */
  char *raw = scratch_get(match_scratch_size(nq, largest) + 64, &owned);
  if (raw == NULL) {
    return IS_SIFT_OUT_OF_MEMORY;
  }
  void *aligned = (void *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
  for (int i = 0; i < n; i++) {
    size_t at = (size_t)i * nq;
    match_vnni(query, nq, candidates[i], counts[i], aligned, best + at, best_index + at, second + at);
  }
  if (owned) free(raw);
  return 0;
#else
  return IS_SIFT_BAD_ARGUMENT;
#endif
}
