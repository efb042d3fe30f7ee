// The floor of decoding a folder of JPEGs with libjpeg(-turbo) on one thread, nothing else: no resize,
// no colour management, no copies. Ingestion's ">= 0.9 of the raw model" target (issue 6) needs all
// other work per image within a ninth of the model's; this measures the part no pipeline can avoid.
// Modes: "auto" decodes each file at the largest DCT scale (1/2, 1/4, 1/8) that still leaves both
// sides >= the target side (what the decoder needs for a 224x224 model input); "8" decodes at 1/8,
// where libjpeg skips the inverse DCT almost entirely (entropy decoding alone: the floor of any JPEG
// decoder). Build and run (docs/BENCHMARKS.md, "Status after session 9"):
//   gcc -O2 -o /tmp/jpeg_floor native/profile/jpeg_floor.c -ljpeg && /tmp/jpeg_floor bench-dev/gallery auto 224 && /tmp/jpeg_floor bench-dev/gallery 8 224
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jpeglib.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s FOLDER auto|1|2|4|8 TARGET_SIDE\n", argv[0]); return 2; }
  int fixed = strcmp(argv[2], "auto") == 0 ? 0 : atoi(argv[2]), target = atoi(argv[3]);
  DIR *dir = opendir(argv[1]);
  if (!dir) { perror(argv[1]); return 1; }
  unsigned char **data = NULL; long *lengths = NULL; int n = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    const char *dot = strrchr(e->d_name, '.');
    if (!dot || (strcasecmp(dot, ".jpg") && strcasecmp(dot, ".jpeg"))) continue;
    char path[4096]; snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
    FILE *f = fopen(path, "rb");
    if (!f) continue;
    fseek(f, 0, SEEK_END); long length = ftell(f); fseek(f, 0, SEEK_SET);
    data = realloc(data, (n + 1) * sizeof *data); lengths = realloc(lengths, (n + 1) * sizeof *lengths);
    data[n] = malloc(length); lengths[n] = (long)fread(data[n], 1, length, f); fclose(f); n++;
  }
  closedir(dir);
  if (n == 0) { fprintf(stderr, "no JPEG in %s\n", argv[1]); return 1; }
  JSAMPLE *row = malloc(3 * 65536);
  double best = 1e9; long pixels = 0, scaleCount[9] = {0};
  for (int pass = 0; pass < 5; pass++) {
    double t0 = now(); pixels = 0;
    for (int i = 0; i < n; i++) {
      struct jpeg_decompress_struct c; struct jpeg_error_mgr m;
      c.err = jpeg_std_error(&m); jpeg_create_decompress(&c);
      jpeg_mem_src(&c, data[i], lengths[i]); jpeg_read_header(&c, TRUE);
      int d = fixed;
      if (!d) { d = 1; while (d < 8 && (int)((c.image_width + 2 * d - 1) / (2 * d)) >= target && (int)((c.image_height + 2 * d - 1) / (2 * d)) >= target) d *= 2; }
      if (pass == 0) scaleCount[d]++;
      c.scale_num = 1; c.scale_denom = d; c.out_color_space = JCS_RGB;
      jpeg_start_decompress(&c);
      while (c.output_scanline < c.output_height) { JSAMPROW r = row; jpeg_read_scanlines(&c, &r, 1); }
      pixels += (long)c.output_width * c.output_height;
      jpeg_finish_decompress(&c); jpeg_destroy_decompress(&c);
    }
    double ms = (now() - t0) / n * 1e3;
    if (ms < best) best = ms;
  }
  printf("%d JPEGs, scale %s (1/1: %ld, 1/2: %ld, 1/4: %ld, 1/8: %ld files): %.3f ms per image on one thread, best of 5 passes\n",
         n, argv[2], scaleCount[1], scaleCount[2], scaleCount[4], scaleCount[8], best);
  return 0;
}
