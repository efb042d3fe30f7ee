#!/usr/bin/env bash
# Installs, idempotently and only what is missing, everything ImageSearch needs:
# Debian packages, pinned npm packages, the native HNSW shim, the exported ONNX models and their
# calibration, and the .NET build. With --test also the test photos, RabbitMQ and the browser test's
# Debian chromium and pinned playwright-core; with --gpu also the CUDA-enabled ONNX Runtime (into
# .cache/onnxruntime-gpu); with --peers also the Debian packages of the peers `./imagesearch bench
# peers` compares with (OpenCV, FAISS, hnswlib for Python); with --model NAME also a model that is
# not exported by default (the pooling variants of the ablation), exported and calibrated. When
# nothing is missing it costs about a second.
# Usage: scripts/setup.sh [--test] [--gpu] [--peers] [--quiet] [--model NAME]...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
want_test=0; want_gpu=0; want_peers=0; quiet=0; requested=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --test) want_test=1 ;;
    --gpu) want_gpu=1 ;;
    --peers) want_peers=1 ;;
    --quiet) quiet=1 ;;
    --model) requested+=("${2:?--model needs a name}"); shift ;;
    *) echo "setup: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
say() { [[ $quiet == 1 ]] || echo "setup: $*" >&2; }
stamps="$root/.cache/stamps"; mkdir -p "$stamps"
fingerprint() { cat "$@" 2>/dev/null | sha256sum | cut -c1-64; }
stamp_ok() { [[ -f "$stamps/$1" && "$(cat "$stamps/$1")" == "$2" ]]; }
stamp_set() { echo "$2" > "$stamps/$1"; }

# 1. Debian packages (root, no prompts; apt-get update only when something is missing).
apt_packages=(libvips42 libturbojpeg0 libhnswlib-dev libvlfeat-dev g++ python3-onnx python3-numpy python3-pil sqlite3 curl)
command -v node >/dev/null || apt_packages+=(nodejs npm)
# The browser test drives Debian's chromium (never a downloaded browser); fonts for its screenshots.
[[ $want_test == 0 ]] || apt_packages+=(chromium fonts-dejavu-core)
# The benchmark peers (bench/peers/*.py, run by Debian's /usr/bin/python3): only on request, so the
# product and its tests never wait for them.
[[ $want_peers == 0 ]] || apt_packages+=(python3-opencv python3-faiss python3-hnswlib)
# bench peers compares pipelines on the average-pooled backbone: OpenCV 4.6's DNN cannot load the R-MAC graph.
[[ $want_peers == 0 ]] || requested+=(mobilenet-v2-1.4)
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

# 4. ONNX models exported from the TF.js weights in the npm package: the default (MobileNetV2-1.4
# with R-MAC pooling) and InceptionV3, any other requested with --model, and for the tests the
# other poolings and scales (raw outputs only, no calibration: the model-fidelity and pooling tests).
models=(inception-v3-mixed7 mobilenet-v2-1.4-rmac)
pooling_variants=(mobilenet-v2-1.4 mobilenet-v2-1.4-max mobilenet-v2-1.4-gem3 mobilenet-v2-1.4-rmac320 mobilenet-v2-1.4-rmac-ms)
for m in "${requested[@]}"; do
  [[ " ${models[*]} ${pooling_variants[*]} " == *" $m "* ]] || { echo "setup: unknown model '$m' (known: ${models[*]} ${pooling_variants[*]})" >&2; exit 2; }
  [[ " ${models[*]} " == *" $m "* ]] || models+=("$m")
done
exported=("${models[@]}")
if [[ $want_test == 1 ]]; then
  for m in "${pooling_variants[@]}"; do [[ " ${exported[*]} " == *" $m "* ]] || exported+=("$m"); done
fi
model_fp=$(fingerprint tools/ModelExport/export.py package-lock.json)
for m in "${exported[@]}"; do
  if ! stamp_ok "model-$m" "$model_fp" || [[ ! -f models/$m/model.onnx ]]; then
    say "exporting ONNX model $m"
    /usr/bin/python3 tools/ModelExport/export.py --nsfwjs node_modules/nsfwjs --out models --model "$m" >/dev/null
    rm -f "models/$m/calibration.bin"
    stamp_set "model-$m" "$model_fp"
  fi
done

# 5. The .NET build, when any source changed since the last one.
build_stamp="$stamps/build"
if [[ ! -f "$build_stamp" ]] || [[ -n "$(find services tests Directory.Build.props Directory.Packages.props global.json \
      -newer "$build_stamp" -type f \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.json' -o -name '*.html' -o -name '*.js' -o -name '*.css' \) \
      -not -path '*/bin/*' -not -path '*/obj/*' -not -path '*/node_modules/*' -print -quit)" ]]; then
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
  # playwright-core for the browser test, exactly as locked, in its own folder (not needed to serve).
  web_fp=$(fingerprint tests/web/package-lock.json)
  if ! stamp_ok web-test "$web_fp" || [[ ! -d tests/web/node_modules/playwright-core ]]; then
    say "installing the browser test's npm packages (npm ci --ignore-scripts in tests/web)"
    (cd tests/web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    stamp_set web-test "$web_fp"
  fi
fi
exit 0
