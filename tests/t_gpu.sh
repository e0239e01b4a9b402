#!/usr/bin/env bash
# GPU tests in `make test`: the GPU programs are built wherever nvcc is (make test
# builds them); they run only where a CUDA device is, and skip with a message
# elsewhere.  The GPU machine runs everything, benchmarks too, with tests/gpu.sh.
cd "$(dirname "$0")/.."
if [ ! -x build/gpu/gpu_kernels ] || [ ! -x build/gpu/gpu_model ]; then
  echo "SKIP gpu tests: built without CUDA (no nvcc)"
  exit 0
fi
out=$(build/gpu/gpu_kernels 2>&1); rc=$?
echo "$out"
case "$out" in SKIP*) exit 0 ;; esac
model=${TMPDIR:-/tmp}/bitnet-t-gpu-$$.gguf
build/random_model -o "$model" --shape tiny --seed 3 >/dev/null || exit 1
build/gpu/gpu_model "$model" 64 16; rc2=$?
rm -f "$model"
[ $rc -eq 0 ] && [ $rc2 -eq 0 ]
