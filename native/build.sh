#!/usr/bin/env bash
# Builds native/build/libhnsw_shim.so from hnsw_shim.cpp against the system hnswlib headers
# (Debian: apt-get install libhnswlib-dev g++). Idempotent: does nothing when the .so is newer
# than its sources, so the csproj can call it on every build.
#
# -march=x86-64-v2 (SSE4.2, no AVX) keeps the binary runnable on any x86-64 machine from ~2009 on;
# -march=native would bake in this machine's AVX-512 and crash elsewhere with SIGILL. Under these
# flags hnswlib's space_ip.h compiles only its SSE inner-product kernels (USE_SSE; USE_AVX and
# USE_AVX512 need __AVX__/__AVX512F__), which hnsw_simd_level() reports at run time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/hnsw_shim.cpp"
out_dir="$here/build"
out="$out_dir/libhnsw_shim.so"
include_dir="${HNSWLIB_INCLUDE:-/usr/include}"

if [[ -f "$out" && "$out" -nt "$src" && "$out" -nt "${BASH_SOURCE[0]}" ]]; then
  exit 0
fi

if [[ ! -f "$include_dir/hnswlib/hnswlib.h" ]]; then
  echo "build.sh: $include_dir/hnswlib/hnswlib.h not found (apt-get install libhnswlib-dev, or set HNSWLIB_INCLUDE)" >&2
  exit 1
fi

case "$(uname -m)" in
  x86_64) arch_flags=(-march=x86-64-v2) ;;
  aarch64) arch_flags=(-march=armv8-a) ;;
  *) arch_flags=() ;;
esac

# hnswlib is included as a system header (/usr/include is one already; another folder gets
# -isystem), so warnings inside it, not ours to fix, stay quiet while -Werror holds our own code to
# the repo's warnings-as-errors rule (MSBuild would turn g++ warnings into errors anyway).
include_flags=()
if [[ "$include_dir" != /usr/include ]]; then
  include_flags=(-isystem "$include_dir")
fi

# libstdc++/libgcc are linked statically: only extern "C" crosses the boundary, and the .so then
# runs next to whatever C++ runtime (or none) the host machine has.
mkdir -p "$out_dir"
# Build to a temporary name and rename, so a concurrent or interrupted build never leaves a
# truncated library where the loader (or the up-to-date check above) would find it.
tmp="$(mktemp "$out_dir/.libhnsw_shim.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"${CXX:-g++}" -std=c++17 -O3 "${arch_flags[@]}" -shared -fPIC -fvisibility=hidden -Wall -Wextra -Werror \
  "${include_flags[@]}" -o "$tmp" "$src" -static-libstdc++ -static-libgcc -Wl,--no-undefined -lpthread
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "build.sh: built $out"
