# bitnet.h - build the examples and tools, run the tests.
#   make            build every example and tool into build/ (with CUDA when nvcc is found)
#   make test       the whole CPU test suite (also an ASan+UBSan build of the tests)
#   make bench      build the benchmarks (tests/bench_*.c) into build/
#   make CUDA=0     build without CUDA even where nvcc exists
#   make model      download microsoft/bitnet-b1.58-2B-4T from Hugging Face and convert it
CC      ?= cc
CXX     ?= c++
OPT     ?= -O2 -march=native
CFLAGS  ?= $(OPT) -g
WARN    := -std=c99 -Wall -Wextra
LDLIBS  := -lpthread -lm
SAN     := -O1 -g -march=native -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

NVCC    ?= nvcc
NVCC_PATH := $(shell command -v $(NVCC) 2>/dev/null)
CUDA    ?= $(if $(NVCC_PATH),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC_PATH))
CUDA_ARCHS ?= -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80 \
              -gencode=arch=compute_75,code=sm_75 -gencode=arch=compute_75,code=compute_75
NVCCFLAGS ?= -O3 -std=c++17 -lineinfo $(CUDA_ARCHS) -Xcompiler -Wall,-Wextra

ifeq ($(CUDA),1)
CUDA_OBJ  := build/bitnet_cuda.o
CUDA_DEFS := -DBITNET_CUDA
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcudart_static -ldl -lrt -lstdc++
endif

EXAMPLES  := $(patsubst examples/%.c,build/%,$(wildcard examples/*.c))
# GPU tests and benchmarks (tests/gpu_*): built wherever nvcc is, run by tests/gpu.sh
# on a machine with a GPU; their host code targets a generic x86-64 with AVX2
# because they run on another machine than the one that builds them.
GPU_HOST_ARCH ?= -march=x86-64-v3
ifeq ($(CUDA),1)
GPU_PROGS := $(patsubst tests/%.cu,build/gpu/%,$(wildcard tests/gpu_*.cu)) $(patsubst tests/%.c,build/gpu/%,$(wildcard tests/gpu_*.c)) \
             build/gpu/gpu_model_kv32 build/gpu/gpu_model_mutant build/gpu/gpu_model_mutant_producer build/gpu/gpu_kernels_mutant \
             build/gpu/gpu_kernels_mutant_tiles build/gpu/gpu_model_mutant_warp_sums build/gpu/gpu_kernels_mutant_requant \
             build/gpu/gpu_model_mutant_units build/gpu/gpu_kernels_mutant_units build/gpu/gpu_model_mutant_spread
endif
TEST_SRCS := $(wildcard tests/test_*.c)
TESTS     := $(patsubst tests/%.c,build/tests/%,$(TEST_SRCS))
ASAN_TESTS:= $(patsubst tests/%.c,build/asan/%,$(TEST_SRCS))
TEST_SCRIPTS := $(wildcard tests/t_*.sh)
BENCHES   := $(patsubst tests/%.c,build/%,$(wildcard tests/bench_*.c))

.PHONY: all test bench check-headers clean model gpu
all: $(EXAMPLES)

build/bitnet_cuda.o: bitnet_cuda.cu bitnet.h
	@mkdir -p build
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

build/%: examples/%.c bitnet.h $(wildcard examples/*.h) $(CUDA_OBJ)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) $(CUDA_DEFS) -I. $< $(CUDA_OBJ) -o $@ $(CUDA_LIBS) $(LDLIBS)

gpu: $(GPU_PROGS)

build/gpu/gpu_bench_gemv: GPU_LIBS := -lcublas
build/gpu/%: tests/%.cu tests/test.h tests/gpu_check.h bitnet.h bitnet_cuda.cu
	@mkdir -p build/gpu
	$(NVCC) $(NVCCFLAGS) -Xcompiler $(GPU_HOST_ARCH) -I. -Itests $< -o $@ $(GPU_LIBS)

build/gpu/%: tests/%.c tests/test.h bitnet.h $(CUDA_OBJ)
	@mkdir -p build/gpu
	$(CC) -O2 -g $(GPU_HOST_ARCH) $(WARN) $(CUDA_DEFS) -I. -Itests -I$(CUDA_HOME)/include $< $(CUDA_OBJ) -o $@ $(CUDA_LIBS) $(LDLIBS)

# the whole-model test again with a float32 KV cache (BITNET_CUDA_KV_F32)
build/gpu/gpu_model_kv32: tests/gpu_model.c tests/test.h bitnet.h bitnet_cuda.cu
	@mkdir -p build/gpu
	$(NVCC) $(NVCCFLAGS) -DBITNET_CUDA_KV_F32 -c bitnet_cuda.cu -o build/gpu/bitnet_cuda_kv32.o
	$(CC) -O2 -g $(GPU_HOST_ARCH) $(WARN) $(CUDA_DEFS) -I. -Itests $< build/gpu/bitnet_cuda_kv32.o -o $@ $(CUDA_LIBS) $(LDLIBS)

# A deliberately broken quantization (the int8 values' multiplier derived from the
# scale, 127 / (inv_rms M) * inv_rms, instead of 127 / M: equal in exact arithmetic,
# a rounding apart in float): tests/gpu.sh checks that its test fails.
build/gpu/gpu_kernels_mutant: tests/gpu_kernels.cu tests/test.h tests/gpu_check.h bitnet.h bitnet_cuda.cu
	@mkdir -p build/gpu
	sed 's|        return 127.0f / m;|        return __fmul_rn(*scale, inv_rms);|' bitnet_cuda.cu >build/gpu/mutant_norm.cu
	! cmp -s bitnet_cuda.cu build/gpu/mutant_norm.cu
	$(NVCC) $(NVCCFLAGS) -Xcompiler $(GPU_HOST_ARCH) -I. -Itests '-DGPU_KERNELS_SOURCE="mutant_norm.cu"' -Ibuild/gpu $< -o $@

# The quantization from producers' statistics that never quantizes again when the
# statistics' multiplier differs from 127 / max |w x| (a tiny max |y|, a NaN, a
# wrong max word): its test must fail.
build/gpu/gpu_kernels_mutant_requant: tests/gpu_kernels.cu tests/test.h tests/gpu_check.h bitnet.h bitnet_cuda.cu
	@mkdir -p build/gpu
	sed 's|    if (t >= 0 && __float_as_uint(f) != __float_as_uint(f_fast)) {|    if (false) {|' bitnet_cuda.cu >build/gpu/mutant_requant.cu
	! cmp -s bitnet_cuda.cu build/gpu/mutant_requant.cu
	$(NVCC) $(NVCCFLAGS) -Xcompiler $(GPU_HOST_ARCH) -I. -Itests '-DGPU_KERNELS_SOURCE="mutant_requant.cu"' -Ibuild/gpu $< -o $@

# A GEMV block of several tiles that writes its outputs where a block of one tile
# would (tile blockIdx.x + i instead of its first tile + i): its test must fail.
build/gpu/gpu_kernels_mutant_tiles: tests/gpu_kernels.cu tests/test.h tests/gpu_check.h bitnet.h bitnet_cuda.cu
	@mkdir -p build/gpu
	sed 's|bitnet__gemv_epilogue<OUT>(a, t0 + (i >> 4)|bitnet__gemv_epilogue<OUT>(a, blockIdx.x + (i >> 4)|' bitnet_cuda.cu >build/gpu/mutant_tiles.cu
	! cmp -s bitnet_cuda.cu build/gpu/mutant_tiles.cu
	$(NVCC) $(NVCCFLAGS) -Xcompiler $(GPU_HOST_ARCH) -I. -Itests '-DGPU_KERNELS_SOURCE="mutant_tiles.cu"' -Ibuild/gpu $< -o $@

# gpu_model against a deliberately broken copy of bitnet_cuda.cu (float32 cache):
# $(call model_mutant,NAME,SED_SCRIPT); tests/gpu.sh checks that gpu_model fails on it.
define model_mutant
	@mkdir -p build/gpu
	sed '$(2)' bitnet_cuda.cu >build/gpu/$(1).cu
	! cmp -s bitnet_cuda.cu build/gpu/$(1).cu
	$(NVCC) $(NVCCFLAGS) -DBITNET_CUDA_KV_F32 -I. -c build/gpu/$(1).cu -o build/gpu/$(1).o
	$(CC) -O2 -g $(GPU_HOST_ARCH) $(WARN) $(CUDA_DEFS) -I. -Itests $< build/gpu/$(1).o -o $@ $(CUDA_LIBS) $(LDLIBS)
endef

# the fused step's O phase normalizes with ffn_norm instead of attn_sub_norm
build/gpu/gpu_model_mutant: tests/gpu_model.c tests/test.h bitnet.h bitnet_cuda.cu
	$(call model_mutant,mutant,s/f->norm\[1\] = L->attn_sub_norm;/f->norm[1] = L->ffn_norm;/)

# a producer of the fused step's statistics: gate/up stores act(gate) * up times
# ffn_norm instead of ffn_sub_norm for down's quantization
build/gpu/gpu_model_mutant_producer: tests/gpu_model.c tests/test.h bitnet.h bitnet_cuda.cu
	$(call model_mutant,mutant_producer,s/m == 2 ? layers\[l\].norm\[3\]/m == 2 ? layers[l].norm[2]/)

# each warp's statistics of the fused step's producers summed over its first 8 lanes only
# (the tiny model's O and down blocks have one 16-row tile or none)
WARP_SUMS_SED := s|for (int i = 1; i < 32; i++)|for (int i = 1; i < 8; i++)|
build/gpu/gpu_model_mutant_warp_sums: tests/gpu_model.c tests/test.h bitnet.h bitnet_cuda.cu
	$(call model_mutant,mutant_warp_sums,$(WARP_SUMS_SED))

# the fused step's attention units of fewer query heads than a KV group read the KV
# head of index unit % (units a KV head) instead of the one their query heads share
UNITS_SED := s|kv_units == 1 ? \*uh : \*uh / kv_units;|kv_units == 1 ? *uh : *uh % kv_units;|
build/gpu/gpu_model_mutant_units: tests/gpu_model.c tests/test.h bitnet.h bitnet_cuda.cu
	$(call model_mutant,mutant_units,$(UNITS_SED))

# the fused step's spread combining of attention's slices (above 8 slices) adding the
# slices' partials without their weights exp(m_s - m)
SPREAD_SED := s|if (s + u < splits) o += pv\[u\] \* s_f\[(s + u) \* G + g\].x;|if (s + u < splits) o += pv[u];|
build/gpu/gpu_model_mutant_spread: tests/gpu_model.c tests/test.h bitnet.h bitnet_cuda.cu
	$(call model_mutant,mutant_spread,$(SPREAD_SED))

# the chain's attention kernel with units of fewer query heads than a KV group
# reading KV head (block % KV heads) instead of the one their query heads share
build/gpu/gpu_kernels_mutant_units: tests/gpu_kernels.cu tests/test.h tests/gpu_check.h bitnet.h bitnet_cuda.cu
	@mkdir -p build/gpu
	sed 's|const int kvh = (int)blockIdx.x \* unit_heads / group;|const int kvh = (int)blockIdx.x % a.n_head_kv;|' bitnet_cuda.cu >build/gpu/mutant_chain_units.cu
	! cmp -s bitnet_cuda.cu build/gpu/mutant_chain_units.cu
	$(NVCC) $(NVCCFLAGS) -Xcompiler $(GPU_HOST_ARCH) -I. -Itests '-DGPU_KERNELS_SOURCE="mutant_chain_units.cu"' -Ibuild/gpu $< -o $@

# Benchmarks: programs that print tables (make bench).
build/bench_%: tests/bench_%.c $(wildcard tests/*.h) bitnet.h
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -I. -Itests $< -o $@ $(LDLIBS)

bench: $(BENCHES)

build/tests/%: tests/%.c tests/test.h bitnet.h
	@mkdir -p build/tests
	$(CC) $(CFLAGS) $(WARN) -I. -Itests $< -o $@ $(LDLIBS)

build/asan/%: tests/%.c tests/test.h bitnet.h
	@mkdir -p build/asan
	$(CC) $(SAN) $(WARN) -I. -Itests $< -o $@ $(LDLIBS)

# The header must compile warning-free as C99 and C++, with gcc and clang, in
# every configuration.
HEADER_CHECK = tests/header_check.c
check-headers: $(HEADER_CHECK) bitnet.h
	@mkdir -p build
	@for cc in "gcc -std=c99" "g++ -x c++ -std=c++11" "clang -std=c99" "clang++ -x c++ -std=c++11"; do \
	  set -- $$cc; if ! command -v $$1 >/dev/null; then echo "SKIP check-headers: $$1 not installed"; continue; fi; \
	  for defs in "" "-DBITNET_STATIC" "-DBITNET_NO_SIMD" "-DBITNET_NO_THREADS" "-DBITNET_CUDA" "-mno-avx512f" "-mno-avx2 -mno-avx512f"; do \
	    if $$cc -Wall -Wextra -Wpedantic -Werror -O2 -march=native $$defs -I. -c $(HEADER_CHECK) -o build/header_check.o 2>build/header_check.log; \
	    then echo "PASS header compiles: $$cc $$defs"; else echo "FAIL header compiles: $$cc $$defs"; head -20 build/header_check.log; fi; \
	  done; \
	done

test: $(TESTS) $(ASAN_TESTS) $(EXAMPLES) $(GPU_PROGS)
	@tests/run.sh "$(MAKE) -s check-headers" $(TESTS) $(ASAN_TESTS) $(foreach s,$(TEST_SCRIPTS),"bash $(s)")

model:
	examples/download_model.sh

clean:
	rm -rf build
