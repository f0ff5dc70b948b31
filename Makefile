# cleardit — plain Makefile. `make` builds build/cleardit and build/libcleardit.a;
# `make test` builds and runs every test; `make sanitize` runs the same tests under ASan + UBSan;
# `make bench` runs the benchmarks; `make fuzz-run` fuzzes the safetensors and GGUF readers (clang, libFuzzer).
CC      ?= gcc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS  ?=
OMP     ?= -fopenmp
WARN     = -Wall -Wextra -Wshadow -Wno-unused-parameter
# OpenBLAS, OpenMP build (its threads are our OpenMP threads); rpath so that the OpenMP variant is
# used even where Debian's alternatives point libopenblas.so at the pthread one.
BLAS_INC = /usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIB = /usr/lib/x86_64-linux-gnu/openblas-openmp
BASE     = -std=c11 -g $(OPT) $(WARN) $(OMP) -Iinclude -I$(BLAS_INC) -D_GNU_SOURCE -fno-strict-aliasing
ifeq ($(SAN),1)
  BASE  += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDSAN  = -fsanitize=address,undefined
endif
ifeq ($(SAN),fuzz)
  # libFuzzer build (make fuzz, clang): coverage + ASan + UBSan in the library, OpenMP off.
  BASE  += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
           -fno-omit-frame-pointer -Wno-unknown-pragmas -Wno-source-uses-openmp
  LDSAN  = -fsanitize=address,undefined
endif
LDLIBS   = -ljansson -lpng -lz -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -lm
LDFLAGS += $(OMP) $(LDSAN)

# Per-ISA kernel objects: the same source compiled for each path, chosen at run time.
ISA_AVX512 = -ffp-contract=fast -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -mavx2 -mf16c -mprefer-vector-width=512
ISA_AVX2   = -ffp-contract=fast -mavx2 -mfma -mf16c

LIB_SRC  = $(sort $(wildcard src/util/*.c src/text/*.c src/quant/*.c src/ops/*.c src/io/*.c src/model/*.c src/pipeline/*.c src/train/*.c src/backend/*.c src/backend/cpu/*.c) \
             $(filter-out src/parallel/comm_%.c src/parallel/nccl_%.c,$(wildcard src/parallel/*.c)))

# MPI (patch parallelism, src/parallel/): built when OpenMPI's pkg-config file is found; MPI=0, or
# none, builds src/parallel/comm_none.c instead (--parallel then says why it cannot).
MPI_CFLAGS ?= $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   ?= $(shell pkg-config --libs ompi-c 2>/dev/null)
MPI        ?= $(if $(MPI_LIBS),1,0)
ifeq ($(MPI),1)
  LIB_SRC += src/parallel/comm_mpi.c
  LDLIBS  += $(MPI_LIBS)
else
  LIB_SRC += src/parallel/comm_none.c
endif

# CUDA backend (src/backend/cuda/*.cu): built when nvcc is found, for sm_80 and sm_90; CUDA=0, or
# no nvcc, builds src/backend/nocuda/cuda_stub.c instead (--device cuda then says why it cannot).
# cudart is linked statically; cuBLASLt from the toolkit (rpath).
NVCC      ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA      ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_LIB  ?= $(CUDA_HOME)/lib64
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVFLAGS   ?= -std=c++17 -O3 -g -lineinfo -Iinclude $(CUDA_ARCH) \
             -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-fno-strict-aliasing
ifeq ($(CUDA),1)
  CU_SRC   = $(sort $(wildcard src/backend/cuda/*.cu))
  LDLIBS  += -L$(CUDA_LIB) -Wl,-rpath,$(CUDA_LIB) -lcublasLt -lcudart_static -ldl -lrt -lpthread -lstdc++
else
  CU_SRC   =
  LIB_SRC += src/backend/nocuda/cuda_stub.c
endif
# NCCL (patch parallelism on GPU ranks: src/parallel/nccl_comm.cu, patch_cuda.cu): built in CUDA
# builds when $(CUDA_HOME)/include/nccl.h exists (the toolkit's NCCL, linked from CUDA_LIB with its
# rpath); NCCL=0, or none, builds src/parallel/nccl_none.c instead (GPU ranks then say why not).
NCCL      ?= $(if $(and $(filter 1,$(CUDA)),$(wildcard $(CUDA_HOME)/include/nccl.h)),1,0)
ifeq ($(NCCL),1)
  CU_SRC  += src/parallel/nccl_comm.cu src/parallel/patch_cuda.cu
  LDLIBS  += -lnccl
else
  LIB_SRC += src/parallel/nccl_none.c
endif
CU_OBJ   = $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
CLI_SRC  = $(sort $(wildcard src/cli/*.c))
TEST_SRC = $(sort $(wildcard tests/*.c))
ifeq ($(MPI),1)
  MPI_TEST = $(BUILD)/test_mpi
endif
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  = $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ = $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

all: $(BUILD)/cleardit $(BUILD)/test_cleardit $(BUILD)/example_generate $(MPI_TEST)

$(BUILD)/obj/%_avx512.o: XFLAGS = $(ISA_AVX512)
$(BUILD)/obj/%_avx2.o:   XFLAGS = $(ISA_AVX2)
$(BUILD)/obj/%_generic.o: XFLAGS = -ffp-contract=fast
$(BUILD)/obj/src/parallel/comm_mpi.o: XFLAGS = $(MPI_CFLAGS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(XFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libcleardit.a: $(LIB_OBJ) $(CU_OBJ) $(BUILD)/obj/default_model.o
	@rm -f $@
	ar rcs $@ $^

# The default model (trained by `cleardit train`, shipped in models/) is embedded in the library
# (src/pipeline/embedded.c); without the file the library builds with an empty one and says so
# when it is needed.
DEFAULT_MODEL ?= models/fmnist.safetensors
DEFAULT_CLEAR ?= models/fmnist_clear.safetensors
DEFAULT_MODEL_FILE = $(if $(wildcard $(DEFAULT_MODEL)),$(DEFAULT_MODEL),$(BUILD)/no_default_model)
DEFAULT_CLEAR_FILE = $(if $(wildcard $(DEFAULT_CLEAR)),$(DEFAULT_CLEAR),$(BUILD)/no_default_model)
$(BUILD)/no_default_model:
	@mkdir -p $(BUILD) && : > $@
$(BUILD)/obj/default_model.o: src/pipeline/default_model.S $(DEFAULT_MODEL_FILE) $(DEFAULT_CLEAR_FILE)
	@mkdir -p $(dir $@)
	$(CC) -c -DCD_DEFAULT_MODEL='"$(DEFAULT_MODEL_FILE)"' -DCD_DEFAULT_CLEAR='"$(DEFAULT_CLEAR_FILE)"' $< -o $@

$(BUILD)/cleardit: $(CLI_OBJ) $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# examples/: programs that use include/cleardit.h alone (the tests run them).
$(BUILD)/example_generate: $(BUILD)/obj/examples/generate.o $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_cleardit: $(TEST_OBJ) $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Patch parallelism under mpirun (MPI builds; scripts/test.sh runs it with -np 2 and -np 3).
$(BUILD)/test_mpi: $(BUILD)/obj/tests/mpi/test_patch.o $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The tests find the CLI through CLEARDIT_BIN (CLI tests spawn it).
test: $(BUILD)/cleardit $(BUILD)/test_cleardit $(BUILD)/example_generate
	CLEARDIT_BIN=$(BUILD)/cleardit $(BUILD)/test_cleardit $(TESTS)

sanitize:
	$(MAKE) BUILD=build-san SAN=1 OPT=-O1 CUDA=0 MPI=0 test

bench: $(BUILD)/cleardit
	$(BUILD)/cleardit bench attention

# Checkpoint open time and resident-memory growth on sparse 4 GB and 40 GB files (BENCHMARKS.md).
$(BUILD)/bench_ckpt_open: $(BUILD)/obj/bench/ckpt_open.o $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-ckpt: $(BUILD)/bench_ckpt_open
	$(BUILD)/bench_ckpt_open 4 40

# linear: f32 sgemm vs bf16 weight tiles vs the AVX512_BF16 kernel (bench/linear_bf16.c).
$(BUILD)/bench_linear_bf16: $(BUILD)/obj/bench/linear_bf16.o $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-linear: $(BUILD)/bench_linear_bf16
	$(BUILD)/bench_linear_bf16

# linear on quantized weights: f32 sgemm vs bf16 tiles vs Q8_0 / Q4_0 (bench/qlinear.c).
$(BUILD)/bench_qlinear: $(BUILD)/obj/bench/qlinear.o $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-qlinear: $(BUILD)/bench_qlinear
	$(BUILD)/bench_qlinear

# libFuzzer targets: the safetensors reader and checkpoint indexes (fuzz/fuzz_safetensors.c) and
# the GGUF reader (fuzz/fuzz_gguf.c). fuzz-run works on copies of the committed seeds (new inputs
# go to build-fuzz/corpus*, crashes to build-fuzz/crashes/); a crash fails the run. FUZZ_SECONDS
# bounds the total time: each target gets half.
FUZZ_SECONDS ?= 60
FUZZ_EACH = $$(( $(FUZZ_SECONDS) / 2 ))
FUZZ_OPTS = -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/
$(BUILD)/fuzz_safetensors: fuzz/fuzz_safetensors.c $(BUILD)/libcleardit.a
	$(CC) $(BASE) $(CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDFLAGS) $(LDLIBS)
$(BUILD)/fuzz_gguf: fuzz/fuzz_gguf.c $(BUILD)/libcleardit.a
	$(CC) $(BASE) $(CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDFLAGS) $(LDLIBS)

fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT=-O1 SAN=fuzz OMP= CUDA=0 MPI=0 build-fuzz/fuzz_safetensors \
	    build-fuzz/fuzz_gguf

fuzz-run: fuzz
	rm -rf build-fuzz/corpus build-fuzz/corpus_gguf build-fuzz/crashes
	mkdir -p build-fuzz/corpus build-fuzz/corpus_gguf build-fuzz/crashes
	cp fuzz/corpus/* build-fuzz/corpus/
	cp fuzz/corpus_gguf/* build-fuzz/corpus_gguf/
	build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_EACH) $(FUZZ_OPTS) build-fuzz/corpus
	build-fuzz/fuzz_gguf -max_total_time=$(FUZZ_EACH) $(FUZZ_OPTS) build-fuzz/corpus_gguf

# The kernel lab (lab/): each kernel version validated against the CPU reference, then timed
# (needs a GPU; scripts/gpu-check.sh runs it). The versions that do not ship are compiled here
# only (lab/attention/attn_lab.cu; attn_lab_none.c without CUDA).
LAB_ATTN_OBJ = $(BUILD)/obj/lab/attention/lab_attention.o \
               $(BUILD)/obj/lab/attention/$(if $(filter 1,$(CUDA)),attn_lab.o,attn_lab_none.o)
$(BUILD)/lab_attention: $(LAB_ATTN_OBJ) $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# (The ops tables against the reference are not lab code: the op harness in the test binary,
# build/test_cleardit ops_harness, runs them, the CUDA table where a GPU opens.)
lab: $(BUILD)/lab_attention $(BUILD)/test_cleardit

# The attention kernels' own source run on the CPU (lab/attention/emu_flash.cpp emulates the PTX
# they use): a check of fragment layouts, indexing, masks and barriers that needs no GPU.
$(BUILD)/emu_flash: lab/attention/emu_flash.cpp $(wildcard src/backend/cuda/attn_*.cuh lab/attention/attn_*.cuh) \
                    $(BUILD)/libcleardit.a
	g++ -std=c++17 -O2 -g -Wno-unknown-pragmas -Iinclude -Isrc/backend/cuda -fopenmp $< $(BUILD)/libcleardit.a -o $@ $(LDLIBS)

emu-run: $(BUILD)/emu_flash
	$(BUILD)/emu_flash --quick

clean:
	rm -rf build build-san build-fuzz

.PHONY: all test sanitize bench bench-ckpt bench-linear fuzz fuzz-run lab emu-run clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(LAB_ATTN_OBJ:.o=.d)
