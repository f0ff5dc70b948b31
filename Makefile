# cleardit — plain Makefile. `make` builds build/cleardit and build/libcleardit.a;
# `make test` builds and runs every test; `make sanitize` runs the same tests under ASan + UBSan;
# `make bench` runs the benchmarks; `make fuzz-run` fuzzes the safetensors reader (clang, libFuzzer).
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
ISA_AVX512 = -ffp-contract=fast -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -mavx2 -mprefer-vector-width=512
ISA_AVX2   = -ffp-contract=fast -mavx2 -mfma

LIB_SRC  = $(sort $(wildcard src/util/*.c src/ops/*.c src/io/*.c src/model/*.c src/pipeline/*.c src/train/*.c src/backend/cpu/*.c))
CLI_SRC  = $(sort $(wildcard src/cli/*.c))
TEST_SRC = $(sort $(wildcard tests/*.c))
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  = $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ = $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

all: $(BUILD)/cleardit $(BUILD)/test_cleardit

$(BUILD)/obj/%_avx512.o: XFLAGS = $(ISA_AVX512)
$(BUILD)/obj/%_avx2.o:   XFLAGS = $(ISA_AVX2)
$(BUILD)/obj/%_generic.o: XFLAGS = -ffp-contract=fast

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(XFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libcleardit.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The default model (trained by `cleardit train`, shipped in models/) is embedded in the CLI;
# without the file the CLI builds with an empty one and says so when it is needed.
DEFAULT_MODEL ?= models/fmnist.safetensors
DEFAULT_CLEAR ?= models/fmnist_clear.safetensors
DEFAULT_MODEL_FILE = $(if $(wildcard $(DEFAULT_MODEL)),$(DEFAULT_MODEL),$(BUILD)/no_default_model)
DEFAULT_CLEAR_FILE = $(if $(wildcard $(DEFAULT_CLEAR)),$(DEFAULT_CLEAR),$(BUILD)/no_default_model)
$(BUILD)/no_default_model:
	@mkdir -p $(BUILD) && : > $@
$(BUILD)/obj/default_model.o: src/cli/default_model.S $(DEFAULT_MODEL_FILE) $(DEFAULT_CLEAR_FILE)
	@mkdir -p $(dir $@)
	$(CC) -c -DCD_DEFAULT_MODEL='"$(DEFAULT_MODEL_FILE)"' -DCD_DEFAULT_CLEAR='"$(DEFAULT_CLEAR_FILE)"' $< -o $@

$(BUILD)/cleardit: $(CLI_OBJ) $(BUILD)/obj/default_model.o $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_cleardit: $(TEST_OBJ) $(BUILD)/libcleardit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The tests find the CLI through CLEARDIT_BIN (CLI tests spawn it).
test: $(BUILD)/cleardit $(BUILD)/test_cleardit
	CLEARDIT_BIN=$(BUILD)/cleardit $(BUILD)/test_cleardit $(TESTS)

sanitize:
	$(MAKE) BUILD=build-san SAN=1 OPT=-O1 test

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

# libFuzzer target of the safetensors reader and checkpoint indexes (fuzz/fuzz_safetensors.c).
# fuzz-run works on a copy of the committed seeds (new inputs go to build-fuzz/corpus, crashes
# to build-fuzz/crashes/); a crash fails the run. FUZZ_SECONDS bounds the time.
FUZZ_SECONDS ?= 60
$(BUILD)/fuzz_safetensors: fuzz/fuzz_safetensors.c $(BUILD)/libcleardit.a
	$(CC) $(BASE) $(CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDFLAGS) $(LDLIBS)

fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT=-O1 SAN=fuzz OMP= build-fuzz/fuzz_safetensors

fuzz-run: fuzz
	rm -rf build-fuzz/corpus build-fuzz/crashes
	mkdir -p build-fuzz/corpus build-fuzz/crashes
	cp fuzz/corpus/* build-fuzz/corpus/
	build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/ build-fuzz/corpus

clean:
	rm -rf build build-san build-fuzz

.PHONY: all test sanitize bench bench-ckpt bench-linear fuzz fuzz-run clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
