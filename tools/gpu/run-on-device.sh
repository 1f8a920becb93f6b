#!/usr/bin/env bash
# Runs the GPU suite and the benchmarks on the lent GPU machine (docs/gpu.md). That machine
# starts bare: no Node, no node_modules, no registry. Everything comes from tools/gpu/dist, made
# here by `node tools/gpu/prepare.mjs` and sent as the device tool's carry:
#
#   run(command="bash tools/gpu/run-on-device.sh", carry=["tools/gpu/dist"], timeout_s=600)
#
# Results go to $OUT (the device tool copies them back): env.txt, gpu-suite.log, bench.log,
# bench.json, bench.md. Environment knobs:
#   VIT_GPU_TEST_REQUIRE  default 'hardware': fail if the suite finds no GPU or only llvmpipe
#   VIT_DAWN_BACKEND      default 'vulkan'
#   BENCH_BACKENDS        default 'webgpu,wasm'        BENCH_ARGS  extra tools/bench/run.mjs flags
#   BENCH_TIMEOUT         seconds per model × backend (default 150); SKIP_SUITE=1 / SKIP_BENCH=1
# Also runs on any Linux x86-64 machine with a GPU (OUT defaults to runs/gpu-device).
set -uo pipefail
cd "$(dirname "$0")/../.."
export VIT_REPO_ROOT=$PWD
D=$PWD/tools/gpu/dist
OUT=${OUT:-$PWD/runs/gpu-device}
mkdir -p "$OUT"
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start ))s)"; }
status=0

[ -d "$D" ] || { echo "tools/gpu/dist is missing: run 'node tools/gpu/prepare.mjs' here and carry tools/gpu/dist"; exit 2; }

step "Node"
# xz may be missing on a bare image: Python's lzma (always in the image's python3) is the fallback.
unxz_to() { xz -dc "$1" > "$2" 2>/dev/null || python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; }
if ls "$D"/node/node-*.tar.xz >/dev/null 2>&1; then
  mkdir -p /tmp/vit-node
  tarball=$(ls "$D"/node/node-*.tar.xz | head -1)
  tar -xJf "$tarball" -C /tmp/vit-node 2>/dev/null || python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$tarball" /tmp/vit-node
  export PATH=/tmp/vit-node/bin:$PATH
fi
command -v node >/dev/null || { echo "no node: tools/gpu/dist/node/*.tar.xz missing (prepare.mjs without --no-node)"; exit 2; }
node --version

step "Dawn"
W=$D/node_modules/webgpu/dist/linux-x64
[ -f "$W/dawn.node" ] || unxz_to "$W/dawn.node.xz" "$W/dawn.node"
ls -la "$W/dawn.node"

step "Vulkan loader and driver"
# Bring the loader when the image has none (device README). Unpacked into a private folder and
# found through LD_LIBRARY_PATH (Dawn dlopens libvulkan.so.1), so nothing in / changes.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  for f in "$D"/debs/libvulkan1_*.deb; do
    [ -f "$f" ] || continue
    mkdir -p /tmp/vit-vulkan && dpkg -x "$f" /tmp/vit-vulkan && echo "unpacked $(basename "$f") into /tmp/vit-vulkan"
    export LD_LIBRARY_PATH=/tmp/vit-vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  done
fi
ls /tmp/vit-vulkan/usr/lib/x86_64-linux-gnu/libvulkan.so.1 2>/dev/null || ldconfig -p 2>/dev/null | grep 'libvulkan.so.1' || echo "no libvulkan.so.1: Dawn's Vulkan backend will find nothing"
icd=""
for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d; do ls "$d"/nvidia*.json >/dev/null 2>&1 && icd=found; done
if [ -z "$icd" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json VK_ICD_FILENAMES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  echo "VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi

{
  echo "date: $(date -u +%FT%TZ)"
  echo "node: $(node --version)"
  uname -a
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
  nproc
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  echo "dist built: $(stat -c %y "$D/suite.mjs" 2>/dev/null)"
} > "$OUT/env.txt"
cat "$OUT/env.txt"

export VIT_GPU_TEST_REQUIRE=${VIT_GPU_TEST_REQUIRE:-hardware}
export VIT_DAWN_BACKEND=${VIT_DAWN_BACKEND:-vulkan}
export VIT_WASM_PATHS=$D/wasm/

if [ "${SKIP_SUITE:-0}" != 1 ]; then
  step "GPU suite (VIT_GPU_TEST_REQUIRE=$VIT_GPU_TEST_REQUIRE, VIT_DAWN_BACKEND=$VIT_DAWN_BACKEND)"
  node "$D/suite.mjs" 2>&1 | tee "$OUT/gpu-suite.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  step "benchmarks (${BENCH_BACKENDS:-webgpu,wasm})"
  # shellcheck disable=SC2086
  node tools/bench/run.mjs --bundle "$D/bench.mjs" --backends "${BENCH_BACKENDS:-webgpu,wasm}" --timeout "${BENCH_TIMEOUT:-150}" \
    --batch 16 --runs 5 --warmup 2 --max-phase-ms 15000 ${BENCH_ARGS:-} --json "$OUT/bench.json" --md "$OUT/bench.md" 2>&1 | tee "$OUT/bench.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

step "done (exit $status)"
exit $status
