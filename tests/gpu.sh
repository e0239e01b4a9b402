#!/usr/bin/env bash
# The GPU machine's one script: builds what is missing, tests, benchmarks.
#   usage: tests/gpu.sh [OUT_DIR] [quick]
# Logs and tables go to OUT_DIR (default build/gpu-out); the last lines printed are
# a summary.  "quick" skips the benchmarks and the sanitizers.  Binaries built on
# another machine (make gpu) are used as they are.
set -u
cd "$(dirname "$0")/.."
out=${1:-build/gpu-out}
mode=${2:-full}
mkdir -p "$out"
summary=()
run() {  # run NAME CMD...: log to $out/NAME.log, record PASS/FAIL counts
  local name=$1; shift
  local start=$(date +%s.%N)
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  local p=$(grep -c '^PASS ' "$out/$name.log") f=$(grep -c '^FAIL ' "$out/$name.log")
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  summary+=("$(printf '%-28s %3d passed %3d failed  rc=%d  %ss' "$name" "$p" "$f" "$rc" "$secs")")
  grep '^FAIL \|^SKIP ' "$out/$name.log" | head -20
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv 2>&1 | tee "$out/gpu.txt"
[ -x build/gpu/gpu_kernels ] && [ -x build/random_model ] || make -j8 all gpu >"$out/build.log" 2>&1 || { echo "build failed"; tail -30 "$out/build.log"; exit 1; }
# cuBLAS for the kernel benchmark: the toolkit's, else the one PyTorch ships
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia.cublas as m; print(m.__path__[0] + "/lib")' 2>/dev/null); do
  [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}" && break
done

tmp=${TMPDIR:-/tmp}/bitnet-gpu
mkdir -p "$tmp"
build/random_model -o "$tmp/tiny.gguf" --shape tiny --seed 3 >/dev/null
build/random_model -o "$tmp/mid.gguf" --layers 4 --dim 512 --ffn 1536 --heads 8 --kv-heads 2 --vocab 5000 --ctx 1024 --seed 5 >/dev/null
[ -e "$tmp/2b4t.gguf" ] || build/random_model -o "$tmp/2b4t.gguf" --seed 7 >/dev/null

run kernels       build/gpu/gpu_kernels
run model-tiny    build/gpu/gpu_model "$tmp/tiny.gguf" 64 16
run model-mid     build/gpu/gpu_model "$tmp/mid.gguf" 64 32
run model-2b4t    build/gpu/gpu_model "$tmp/2b4t.gguf" 24 8
if [ "$mode" != quick ]; then
  for tool in memcheck racecheck initcheck; do
    run "sanitizer-$tool" compute-sanitizer --tool $tool --error-exitcode 9 build/gpu/gpu_model "$tmp/tiny.gguf" 4 4
  done
  build/gpu/gpu_bench_gemv 9 2>&1 | tee "$out/bench_gemv.md"
  build/gpu/gpu_bench_decode "$tmp/2b4t.gguf" 5 2>&1 | tee "$out/bench_decode.md"
fi
for l in model-tiny model-mid model-2b4t; do grep -h "relative L2\|greedy:\|int8 LM head" "$out/$l.log" | sed "s/^/$l: /"; done
printf '%s\n' "${summary[@]}"
