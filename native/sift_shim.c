/* SIFT keypoints and descriptors from VLFeat (Debian libvlfeat1), behind one plain C call so
 * that .NET needs no knowledge of VlSiftFilt's layout (its accessors are inline functions in
 * vl/sift.h, not exported symbols of libvl.so).
 *
 * is_sift_extract detects DoG extrema on a grey image (floats in [0, 1], row-major), assigns up to
 * four orientations each, computes the 128-d descriptors, keeps the max_features strongest (by
 * |DoG| at the extremum) and writes them as frames (x, y, scale sigma, angle radians) and 8-bit
 * descriptors (VLFeat's normalised values times 512, clamped to 255: the usual quantisation).
 * Returns how many were written (0..max_features), or a negative is_sift_status.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vl/sift.h>

#define IS_EXPORT __attribute__((visibility("default")))

enum is_sift_status { IS_SIFT_BAD_ARGUMENT = -1, IS_SIFT_OUT_OF_MEMORY = -2 };

typedef struct {
  float x, y, sigma, angle, strength;
  float descriptor[128];
} candidate;

static int by_strength_desc(const void *a, const void *b) {
  float sa = ((const candidate *)a)->strength, sb = ((const candidate *)b)->strength;
  return (sa < sb) - (sa > sb);
}

IS_EXPORT int is_sift_version(void) { return 1; }

IS_EXPORT int is_sift_extract(const float *image, int width, int height, int first_octave,
                              double peak_threshold, double edge_threshold, int max_features,
                              float *frames, unsigned char *descriptors) {
  if (image == NULL || width < 8 || height < 8 || max_features < 0 || frames == NULL || descriptors == NULL ||
      first_octave < -1 || first_octave > 4) {
    return IS_SIFT_BAD_ARGUMENT;
  }

  VlSiftFilt *filter = vl_sift_new(width, height, -1, 3, first_octave);
  if (filter == NULL) {
    return IS_SIFT_OUT_OF_MEMORY;
  }
  vl_sift_set_peak_thresh(filter, peak_threshold);
  vl_sift_set_edge_thresh(filter, edge_threshold);

  size_t count = 0, capacity = 256;
  candidate *all = malloc(capacity * sizeof(candidate));
  int status = all == NULL ? IS_SIFT_OUT_OF_MEMORY : 0;

  int err = status == 0 ? vl_sift_process_first_octave(filter, image) : VL_ERR_EOF;
  while (status == 0 && err != VL_ERR_EOF) {
    vl_sift_detect(filter);
    const VlSiftKeypoint *keys = vl_sift_get_keypoints(filter);
    int nkeys = vl_sift_get_nkeypoints(filter);
    const vl_sift_pix *dog = filter->dog;
    int ow = vl_sift_get_octave_width(filter), oh = vl_sift_get_octave_height(filter);
    int s_min = filter->s_min;
    for (int i = 0; i < nkeys && status == 0; i++) {
      const VlSiftKeypoint *k = &keys[i];
      float strength = 0;
      if (k->ix >= 0 && k->ix < ow && k->iy >= 0 && k->iy < oh && k->is - s_min >= 0 && k->is - s_min < filter->s_max - s_min) {
        strength = fabsf(dog[(size_t)(k->is - s_min) * ow * oh + (size_t)k->iy * ow + k->ix]);
      }
      double angles[4];
      int nangles = vl_sift_calc_keypoint_orientations(filter, angles, k);
      for (int a = 0; a < nangles; a++) {
        if (count == capacity) {
          candidate *grown = realloc(all, 2 * capacity * sizeof(candidate));
          if (grown == NULL) {
            status = IS_SIFT_OUT_OF_MEMORY;
            break;
          }
          all = grown;
          capacity *= 2;
        }
        candidate *c = &all[count++];
        c->x = k->x;
        c->y = k->y;
        c->sigma = k->sigma;
        c->angle = (float)angles[a];
        c->strength = strength;
        vl_sift_calc_keypoint_descriptor(filter, c->descriptor, k, angles[a]);
      }
    }
    err = vl_sift_process_next_octave(filter);
  }
  vl_sift_delete(filter);

  if (status != 0) {
    free(all);
    return status;
  }

  qsort(all, count, sizeof(candidate), by_strength_desc);
  int n = count < (size_t)max_features ? (int)count : max_features;
  for (int i = 0; i < n; i++) {
    frames[4 * i] = all[i].x;
    frames[4 * i + 1] = all[i].y;
    frames[4 * i + 2] = all[i].sigma;
    frames[4 * i + 3] = all[i].angle;
    for (int d = 0; d < 128; d++) {
      float v = 512.0f * all[i].descriptor[d];
      descriptors[128 * i + d] = (unsigned char)(v >= 255.0f ? 255 : (int)(v + 0.5f));
    }
  }
  free(all);
  return n;
}
