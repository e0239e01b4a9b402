#!/usr/bin/env bash
# The GPU machine's one script: builds what is missing, tests, benchmarks.
#   usage: tests/gpu.sh [OUT_DIR] [quick]
# Writes OUT_DIR/tests.log (every test's output), sanitizer.log, bench.md (the
# benchmark tables) and gpu.txt; prints the tables and a summary last.  "quick"
# skips the benchmarks and the sanitizers.  Binaries built elsewhere (make gpu, on
# any machine with nvcc) are used as they are.
set -u
cd "$(dirname "$0")/.."
out=${1:-build/gpu-out}
mode=${2:-full}
mkdir -p "$out"
: >"$out/tests.log"
summary=()
run() {  # run LOG NAME CMD...: append to $out/LOG, record the PASS/FAIL counts
  local log=$out/$1 name=$2; shift 2
  local start=$(date +%s.%N) tmp=$out/.run.tmp
  timeout "${GPU_TEST_TIMEOUT:-300}" "$@" >"$tmp" 2>&1
  local rc=$?
  local secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  local p=$(grep -c '^PASS ' "$tmp") f=$(grep -c '^FAIL ' "$tmp")
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  { echo "=== $name: $*"; cat "$tmp"; } >>"$log"
  summary+=("$(printf '%-24s %3d passed %3d failed  rc=%d  %ss' "$name" "$p" "$f" "$rc" "$secs")")
  grep '^FAIL \|^SKIP ' "$tmp" | head -8 | sed "s/^/$name: /"
  grep -h 'relative L2\|every position before\|^greedy:\|int8 LM head vs\|ERROR SUMMARY\|^step mode' "$tmp" | sed "s/^/$name: /"
  rm -f "$tmp"
  if [ "$rc" -eq 124 ]; then  # a hang: nothing after it can be trusted
    echo "$name timed out; stopping"
    printf '%s\n' "${summary[@]}"
    exit 1
  fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv 2>&1 | tee "$out/gpu.txt"
[ -x build/gpu/gpu_kernels ] && [ -x build/random_model ] && [ -x build/convert ] || make -j8 all gpu >"$out/build.log" 2>&1 || { echo "build failed"; tail -30 "$out/build.log"; exit 1; }
# cuBLAS for the kernel benchmark: the toolkit's, else the one PyTorch ships
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia.cublas as m; print(m.__path__[0] + "/lib")' 2>/dev/null); do
  [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}" && break
done

tmp=${TMPDIR:-/tmp}/bitnet-gpu
mkdir -p "$tmp"
build/random_model -o "$tmp/tiny.gguf" --shape tiny --seed 3 >/dev/null
build/random_model -o "$tmp/mid.gguf" --layers 4 --dim 512 --ffn 1536 --heads 8 --kv-heads 2 --vocab 5000 --ctx 1024 --seed 5 >/dev/null
build/random_model -o "$tmp/wide1.gguf" --layers 1 --seed 9 >/dev/null
# 8 query heads of 256 dimensions per KV head: the general attention instance
build/random_model -o "$tmp/bighead.gguf" --layers 2 --dim 2048 --ffn 2048 --heads 8 --kv-heads 1 --vocab 3000 --ctx 512 --seed 11 >/dev/null
[ -e "$tmp/2b4t.gguf" ] || build/random_model -o "$tmp/2b4t.gguf" --seed 7 >/dev/null

build/gpu/gpu_bench_norm >>"$out/tests.log" 2>&1
run tests.log kernels build/gpu/gpu_kernels
# The backend as shipped (fp16 KV cache), then the float32-cache build (tight bound
# where the model is shallow; deep random models amplify any rounding difference,
# see tests/gpu_model.c)
run tests.log model-tiny  build/gpu/gpu_model "$tmp/tiny.gguf" 64 16 0.2
run tests.log model-mid   build/gpu/gpu_model "$tmp/mid.gguf" 64 32 0.2
run tests.log model-wide1 build/gpu/gpu_model "$tmp/wide1.gguf" 32 8 0.2
run tests.log model-2b4t  build/gpu/gpu_model "$tmp/2b4t.gguf" 24 8 0.2
run tests.log kv32-tiny   build/gpu/gpu_model_kv32 "$tmp/tiny.gguf" 64 16 0.05 1e-5
run tests.log kv32-mid    build/gpu/gpu_model_kv32 "$tmp/mid.gguf" 64 32 0.05 1e-5
run tests.log kv32-wide1  build/gpu/gpu_model_kv32 "$tmp/wide1.gguf" 32 8 0.05 1e-5
run tests.log kv32-2b4t   build/gpu/gpu_model_kv32 "$tmp/2b4t.gguf" 24 8 0.2
# the fused step (step mode 3, bitnet_cuda.cu) as the main path, against the CPU
# too (every run above also checks it against the kernel chain on the prompt)
run tests.log fused-mid       build/gpu/gpu_model "$tmp/mid.gguf" 64 32 0.2 0 3
run tests.log fused-2b4t      build/gpu/gpu_model "$tmp/2b4t.gguf" 24 8 0.2 0 3
run tests.log kv32-fused-tiny build/gpu/gpu_model_kv32 "$tmp/tiny.gguf" 64 16 0.05 1e-5 3
run tests.log kv32-fused-mid  build/gpu/gpu_model_kv32 "$tmp/mid.gguf" 64 32 0.05 1e-5 3
# (24 positions for the tight bound: over 96, one int8 rounding flip near position 40,
# GPU and CPU adding the attention in another order, reaches every later position
# through the cache: median 0.009 while the first 24 match to 2e-7; the fp16 run
# covers the longer context)
run tests.log kv32-bighead       build/gpu/gpu_model_kv32 "$tmp/bighead.gguf" 16 8 0.05 1e-5 2
run tests.log kv32-fused-bighead build/gpu/gpu_model_kv32 "$tmp/bighead.gguf" 16 8 0.05 1e-5 3
run tests.log fused-bighead      build/gpu/gpu_model "$tmp/bighead.gguf" 64 32 0.2 0 3
# slices of 16 positions: up to 7 slices by position 103, so the combining of
# slices runs at short contexts too, in both step modes
run tests.log kv32-fused-mid-slices16 build/gpu/gpu_model_kv32 "$tmp/mid.gguf" 64 32 0.05 1e-5 3 16
run tests.log fused-2b4t-slices16     build/gpu/gpu_model "$tmp/2b4t.gguf" 24 8 0.2 0 3 16
# attention units: at short contexts the fused step gives each query head its own
# blocks (4-position slices: one head a unit up to position 63 of the mid model, then
# two), and variant 32 keeps every unit a whole KV group, as at long contexts
run tests.log kv32-fused-mid-slices4   build/gpu/gpu_model_kv32 "$tmp/mid.gguf" 64 64 0.05 1e-5 3 4
run tests.log kv32-fused-mid-grouped   build/gpu/gpu_model_kv32 "$tmp/mid.gguf" 64 32 0.05 1e-5 3 16 32
run tests.log fused-2b4t-grouped       build/gpu/gpu_model "$tmp/2b4t.gguf" 24 8 0.2 0 3 16 32
# Deliberately broken builds must fail their tests.
# must_fail NAME PATTERN WHAT CMD...: runs CMD, records PASS if its output has a line
# matching PATTERN (a FAIL of the guarded check), else FAIL
must_fail() {
  local name=$1 pattern=$2 what=$3; shift 3
  timeout 120 "$@" >"$out/$name.log" 2>&1
  if grep -q "$pattern" "$out/$name.log"; then
    echo "PASS $what fails: $(grep -c '^FAIL ' "$out/$name.log") checks" >"$out/.mutant"
  else
    echo "FAIL $what passes its tests" >"$out/.mutant"
  fi
  run tests.log "$name" cat "$out/.mutant"
}
must_fail mutant          '^FAIL '               'the broken fused step' build/gpu/gpu_model_mutant "$tmp/tiny.gguf" 16 16 0.05 1e-5 3
must_fail mutant-producer '^FAIL '               'the fused step with a broken producer' \
  build/gpu/gpu_model_mutant_producer "$tmp/tiny.gguf" 16 16 0.05 1e-5 3
must_fail mutant-norm     '^FAIL .*norm'         'the broken normalization' build/gpu/gpu_kernels_mutant norm
must_fail mutant-requant  '^FAIL .*norm.*way [24]' 'the quantization from statistics without its second pass' \
  build/gpu/gpu_kernels_mutant_requant norm
must_fail mutant-tiles    '^FAIL .*tiles a block' 'the broken multi-tile GEMV' build/gpu/gpu_kernels_mutant_tiles tiles
must_fail mutant-warp-sums '^FAIL '              'the fused step summing 8 lanes of each warp' \
  build/gpu/gpu_model_mutant_warp_sums "$tmp/tiny.gguf" 16 16 0.05 1e-5 3
must_fail mutant-units    '^FAIL '               'the fused step reading the wrong KV head for single-head units' \
  build/gpu/gpu_model_mutant_units "$tmp/tiny.gguf" 16 16 0.05 1e-5 3
# (4-position slices of the mid model: up to 32 slices, so the spread combining runs)
must_fail mutant-spread   '^FAIL '               "the fused step's spread combining without the slices' weights" \
  build/gpu/gpu_model_mutant_spread "$tmp/mid.gguf" 64 64 0.05 1e-5 3 4
must_fail mutant-chain-units '^FAIL .*attention' "the chain's attention reading the wrong KV head for part-group units" \
  build/gpu/gpu_kernels_mutant_units attention
# the committed reference fixtures (tests/fixtures, converted here), greedy for 64 steps
for d in tests/fixtures/*/; do
  [ -e "$d/config.json" ] || continue
  f=$tmp/fixture-$(basename "$d").gguf
  build/convert -q "$d" "$f" >/dev/null 2>&1 || { echo "conversion of $d failed"; continue; }
  run tests.log "fixture-$(basename "$d")" build/gpu/gpu_model "$f" 64 16 0.2
  run tests.log "kv32-fixture-$(basename "$d")" build/gpu/gpu_model_kv32 "$f" 64 16 0.05 1e-5
  run tests.log "fused-fixture-$(basename "$d")" build/gpu/gpu_model "$f" 64 16 0.2 0 3
done
if [ "$mode" != quick ]; then
  : >"$out/sanitizer.log"
  for tool in memcheck racecheck initcheck; do
    for mode in 3 2; do  # the fused step (the default on Hopper), the kernel chain
      GPU_TEST_TIMEOUT=400 run sanitizer.log "$tool-mode$mode" compute-sanitizer --tool $tool --error-exitcode 9 build/gpu/gpu_model "$tmp/tiny.gguf" 4 4 0.2 0 $mode
    done
  done
  { timeout 300 build/gpu/gpu_bench_gemv 9; echo; timeout 300 build/gpu/gpu_bench_decode "$tmp/2b4t.gguf" 5; echo; timeout 60 build/gpu/gpu_bench_broadcast; echo; timeout 60 build/gpu/gpu_bench_fence; echo; timeout 60 build/gpu/gpu_bench_exchange; } >"$out/bench.md" 2>&1
  cat "$out/bench.md"
fi
printf '%s\n' "${summary[@]}"
