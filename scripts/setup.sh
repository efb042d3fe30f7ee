#!/usr/bin/env bash
# Installs, idempotently and only what is missing, everything ImageSearch needs:
# Debian packages, pinned npm packages, the native HNSW shim, the exported ONNX models and their
# calibration, and the .NET build. With --test also the test photos; with --gpu also the
# CUDA-enabled ONNX Runtime (into .cache/onnxruntime-gpu); with --peers also the Debian packages of
# the peers `./imagesearch bench peers` compares with (OpenCV, FAISS, hnswlib for Python). When
# nothing is missing it costs about a second. Usage: scripts/setup.sh [--test] [--gpu] [--peers] [--quiet]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
want_test=0; want_gpu=0; want_peers=0; quiet=0
for a in "$@"; do
  case $a in
    --test) want_test=1 ;;
    --gpu) want_gpu=1 ;;
    --peers) want_peers=1 ;;
    --quiet) quiet=1 ;;
    *) echo "setup: unknown option $a" >&2; exit 2 ;;
  esac
done
say() { [[ $quiet == 1 ]] || echo "setup: $*" >&2; }
stamps="$root/.cache/stamps"; mkdir -p "$stamps"
fingerprint() { cat "$@" 2>/dev/null | sha256sum | cut -c1-64; }
stamp_ok() { [[ -f "$stamps/$1" && "$(cat "$stamps/$1")" == "$2" ]]; }
stamp_set() { echo "$2" > "$stamps/$1"; }

# 1. Debian packages (root, no prompts; apt-get update only when something is missing).
apt_packages=(libvips42 libturbojpeg0 libhnswlib-dev libvlfeat-dev g++ python3-onnx python3-numpy python3-pil sqlite3 curl)
command -v node >/dev/null || apt_packages+=(nodejs npm)
# The benchmark peers (bench/peers/*.py, run by Debian's /usr/bin/python3): only on request, so the
# product and its tests never wait for them.
[[ $want_peers == 0 ]] || apt_packages+=(python3-opencv python3-faiss python3-hnswlib)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  say "installing Debian packages: ${missing[*]}"
  sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v dotnet >/dev/null || { echo "setup: the .NET 10 SDK is required (dotnet not on PATH); see README.md" >&2; exit 1; }

# 2. npm packages, exactly as locked (scripts never run: they would try to download binaries).
npm_fp=$(fingerprint package-lock.json)
if ! stamp_ok npm "$npm_fp" || [[ ! -d node_modules ]]; then
  say "installing npm packages (npm ci --ignore-scripts)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
  stamp_set npm "$npm_fp"
fi

# 3. Native HNSW shim (compiled against Debian's hnswlib headers).
bash native/build.sh

# 4. ONNX models exported from the TF.js weights in the npm package.
models=(inception-v3-mixed7 mobilenet-v2-1.4)
model_fp=$(fingerprint tools/ModelExport/export.py package-lock.json)
if ! stamp_ok models "$model_fp" || [[ ! -f models/${models[0]}/model.onnx || ! -f models/${models[1]}/model.onnx ]]; then
  say "exporting ONNX models"
  /usr/bin/python3 tools/ModelExport/export.py --nsfwjs node_modules/nsfwjs --out models --model all
  rm -f models/*/calibration.bin
  stamp_set models "$model_fp"
fi

# 5. The .NET build, when any source changed since the last one.
build_stamp="$stamps/build"
if [[ ! -f "$build_stamp" ]] || [[ -n "$(find services tests Directory.Build.props Directory.Packages.props global.json \
      -newer "$build_stamp" -type f \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.json' -o -name '*.html' -o -name '*.js' -o -name '*.css' \) \
      -not -path '*/bin/*' -not -path '*/obj/*' -print -quit)" ]]; then
  say "building (dotnet build -c Release)"
  dotnet build ImageSearch.sln -c Release -nologo -clp:ErrorsOnly -v:quiet
  touch "$build_stamp"
fi

# 6. Calibration learned once per model on photos outside the benchmarks: centring plus
# PCA-whitening to 512 dimensions (the choice is measured in docs/QUALITY.md).
calibration_args=(--whiten --dims 512)
imaging_fp=$(find services/ImageSearch.Imaging -name '*.cs' -not -path '*/bin/*' -not -path '*/obj/*' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-64)
for m in "${models[@]}"; do
  # The decoder's code is part of the fingerprint: calibration must see the same pixels as queries.
  cal_fp=$(echo "${calibration_args[*]} $model_fp $(fingerprint tests/fixtures/calibration-photos.sha256) $imaging_fp" | sha256sum | cut -c1-64)
  if ! stamp_ok "calibration-$m" "$cal_fp" || [[ ! -f models/$m/calibration.bin ]]; then
    bash scripts/fetch-calibration.sh >/dev/null
    say "calibrating $m"
    dotnet services/ImageSearch.Cli/bin/Release/net10.0/ImageSearch.Cli.dll calibrate --model "$m" --images .cache/calibration "${calibration_args[@]}"
    stamp_set "calibration-$m" "$cal_fp"
  fi
done

# 7. CUDA-enabled ONNX Runtime, on request: the onnxruntime-node core (built with CUDA) and the
# ORT 1.29 CUDA provider libraries, side by side in one folder (ONNX Runtime loads providers from
# the folder its core came from). Needs CUDA 13 and cuDNN 9 on the machine at run time.
if [[ $want_gpu == 1 ]]; then
  gpu_fp=$(fingerprint deploy/gpu/package-lock.json)
  gpu_dir="$root/.cache/onnxruntime-gpu"
  if ! stamp_ok gpu "$gpu_fp" || [[ ! -f "$gpu_dir/libonnxruntime.so" ]]; then
    say "installing the CUDA-enabled ONNX Runtime (npm ci in deploy/gpu)"
    (cd deploy/gpu && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    rm -rf "$gpu_dir"; mkdir -p "$gpu_dir"
    cp deploy/gpu/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1 "$gpu_dir/libonnxruntime.so"
    for lib in libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so; do
      found=$(find deploy/gpu/node_modules/com.github.asus4.onnxruntime.linux-x64-gpu -name "$lib" -print -quit)
      [[ -n "$found" ]] || { echo "setup: $lib not found in the GPU package" >&2; exit 1; }
      cp "$found" "$gpu_dir/"
    done
    stamp_set gpu "$gpu_fp"
  fi
fi

# 8. Test photos (real photos from a pinned Debian package) and the RabbitMQ server that the
#    distributed tests start privately (installed here so a failure shows in setup, not in a test).
if [[ $want_test == 1 ]]; then
  bash scripts/fetch-test-data.sh
  bash scripts/rabbitmq.sh install
fi
exit 0
