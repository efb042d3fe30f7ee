#!/usr/bin/env bash
# Builds the native shims into native/build/: libhnsw_shim.so from hnsw_shim.cpp against the
# system hnswlib headers (Debian: libhnswlib-dev g++) and libsift_shim.so from sift_shim.c against
# VLFeat (Debian: libvlfeat-dev). Idempotent: a library newer than its sources is left alone, so
# the csproj files can call it on every build. `build.sh hnsw` or `build.sh sift` builds one.
#
# -march=x86-64-v2 (SSE4.2, no AVX) keeps the binary runnable on any x86-64 machine from ~2009 on;
# -march=native would bake in this machine's AVX-512 and crash elsewhere with SIGILL. Under these
# flags hnswlib's space_ip.h compiles only its SSE inner-product kernels (USE_SSE; USE_AVX and
# USE_AVX512 need __AVX__/__AVX512F__), which hnsw_simd_level() reports at run time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="$here/build"
include_dir="${HNSWLIB_INCLUDE:-/usr/include}"

case "$(uname -m)" in
  x86_64) arch_flags=(-march=x86-64-v2) ;;
  aarch64) arch_flags=(-march=armv8-a) ;;
  *) arch_flags=() ;;
esac
mkdir -p "$out_dir"

# Compiles to a temporary name and renames, so a concurrent or interrupted build never leaves a
# truncated library where the loader (or the up-to-date check) would find it.
#   build_lib NAME SOURCE COMPILER FLAGS_AND_LINK_ARGS...
build_lib() {
  local name=$1 src=$2 compiler=$3; shift 3
  local out="$out_dir/lib$name.so"
  if [[ -f "$out" && "$out" -nt "$src" && "$out" -nt "${BASH_SOURCE[0]}" ]]; then
    return 0
  fi
  local tmp
  tmp="$(mktemp "$out_dir/.lib$name.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -f '$tmp'" EXIT
  "$compiler" -O3 "${arch_flags[@]}" -shared -fPIC -fvisibility=hidden -Wall -Wextra -Werror -o "$tmp" "$src" "$@"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$out"
  trap - EXIT
  echo "build.sh: built $out"
}

build_hnsw() {
  if [[ ! -f "$include_dir/hnswlib/hnswlib.h" ]]; then
    echo "build.sh: $include_dir/hnswlib/hnswlib.h not found (apt-get install libhnswlib-dev, or set HNSWLIB_INCLUDE)" >&2
    exit 1
  fi
  # hnswlib is included as a system header (/usr/include is one already; another folder gets
  # -isystem), so warnings inside it, not ours to fix, stay quiet while -Werror holds our own code
  # to the repo's warnings-as-errors rule. libstdc++/libgcc are linked statically: only extern "C"
  # crosses the boundary, and the .so then runs next to whatever C++ runtime the host has.
  local include_flags=()
  if [[ "$include_dir" != /usr/include ]]; then
    include_flags=(-isystem "$include_dir")
  fi
  build_lib hnsw_shim "$here/hnsw_shim.cpp" "${CXX:-g++}" -std=c++17 "${include_flags[@]}" \
    -static-libstdc++ -static-libgcc -Wl,--no-undefined -lpthread
}

build_sift() {
  if [[ ! -f /usr/include/vl/sift.h ]]; then
    echo "build.sh: /usr/include/vl/sift.h not found (apt-get install libvlfeat-dev)" >&2
    exit 1
  fi
  # -ffp-contract=off: the fast scale space must round as VLFeat's scalar loop, a multiply then an
  # add, never fused (sift_shim.c explains why its features equal VLFeat's bit for bit).
  build_lib sift_shim "$here/sift_shim.c" "${CC:-gcc}" -std=c11 -ffp-contract=off -Wl,--no-undefined -lvl -lm
}

case "${1:-all}" in
  hnsw) build_hnsw ;;
  sift) build_sift ;;
  all) build_hnsw; build_sift ;;
  *) echo "build.sh: unknown target '$1' (hnsw, sift or all)" >&2; exit 2 ;;
esac
