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
 *    (vl_imconvcol_vf) is scalar in Debian's build and was 35% of the extraction time. Detection,
 *    orientations and descriptors stay VLFeat's own calls on that scale space. Descriptors (38%
 *    of the time) are computed only for the max_features orientations that are kept: every octave
 *    is kept in memory, so the strongest can be chosen after the last octave is detected.
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
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vl/sift.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define IS_EXPORT __attribute__((visibility("default")))

enum is_sift_status { IS_SIFT_BAD_ARGUMENT = -1, IS_SIFT_OUT_OF_MEMORY = -2 };

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
  if (__builtin_cpu_supports("avx512f")) return IS_SIFT_AVX512;
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
 * or IS_SIFT_OUT_OF_MEMORY when the kernel outgrows the scratch buffers. */
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
#if defined(__x86_64__)
  if (kernel >= IS_SIFT_AVX512) {
    sm.column = column_avx512;
    sm.row = row_avx512;
  } else if (kernel == IS_SIFT_AVX2) {
    sm.column = column_avx2;
    sm.row = row_avx2;
  }
#else
  (void)kernel;
#endif

  /* Every octave's scale space and gradient stay in memory (about 2.2x and 3.3x the first
   * octave's levels), so descriptors can wait until the strongest keypoints are known. */
  size_t *offsets = calloc((size_t)O + 1, sizeof(size_t));
  size_t total = 0;
  for (int i = 0; offsets != NULL && i < O; i++) {
    offsets[i] = total;
    total += (size_t)octave_width(filter, o_min + i) * (size_t)octave_height(filter, o_min + i);
  }
  float *pyramid = offsets == NULL ? NULL : malloc(sizeof(float) * (total * (size_t)levels + 1));
  float *gradients = offsets == NULL ? NULL : malloc(sizeof(float) * (total * 2 * (size_t)dog_levels + 1));
  /* filter->temp (one level of the first octave) is the smoothing's and upsample2's scratch. */
  int *gradient_valid = calloc((size_t)O + 1, sizeof(int));
  size_t count = 0, capacity = 256;
  pending *all = malloc(capacity * sizeof(pending));
  float *vl_octave = filter->octave, *vl_grad = filter->grad;
  int status = pyramid == NULL || gradients == NULL || gradient_valid == NULL || all == NULL ? IS_SIFT_OUT_OF_MEMORY : 0;

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
      vl_sift_calc_keypoint_descriptor(filter, descriptor, &p->key, p->angle);
      write_frame(&frames[4 * j], &descriptors[128 * j], p->key.x, p->key.y, p->key.sigma, (float)p->angle, descriptor);
    }
  }

  /* vl_sift_delete frees the filter's own buffers. */
  filter->octave = vl_octave;
  filter->grad = vl_grad;
  free(all);
  free(gradient_valid);
  free(gradients);
  free(pyramid);
  free(offsets);
  return status != 0 ? status : n;
}

IS_EXPORT int is_sift_version(void) { return 2; }

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
