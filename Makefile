# qlib: plain make. Targets: all check bench demo install uninstall clean fuzz
# cross-aarch64 check-aarch64 model-check interop-check memory-check consumer-check deps-check.
# Variants: SANITIZE=1 (ASan+UBSan), TSAN=1, BLAS=none (the built-in linear algebra
# instead of OpenBLAS, in build/<variant>-noblas).
SHELL = /bin/sh

VERSION_MAJOR := $(shell sed -n 's/^\#define QLIB_VERSION_MAJOR \([0-9]*\).*/\1/p' include/qlib.h)
VERSION_MINOR := $(shell sed -n 's/^\#define QLIB_VERSION_MINOR \([0-9]*\).*/\1/p' include/qlib.h)
VERSION_PATCH := $(shell sed -n 's/^\#define QLIB_VERSION_PATCH \([0-9]*\).*/\1/p' include/qlib.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR_INSTALL ?= $(PREFIX)/lib
INCDIR_INSTALL ?= $(PREFIX)/include

CC ?= cc
CFLAGS ?= -O2 -g
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# CI (CI=true) builds with -Werror, the README's plain `make check` included.
ifeq ($(CI),true)
WERROR ?= 1
endif
ifeq ($(WERROR),1)
WARN += -Werror
endif
PYTHON ?= /usr/bin/python3

# BLAS=openblas (the default): GPTQ's and AWQ's linear algebra from OpenBLAS
# (CBLAS + LAPACK). BLAS=none: from src/linalg/builtin*.c; the library then
# links no BLAS. The bench and the examples' own fp32 products use OpenBLAS
# in both builds.
BLAS ?= openblas
ifeq (,$(filter openblas none,$(BLAS)))
$(error BLAS=$(BLAS): use BLAS=openblas (the default) or BLAS=none)
endif
OPENBLAS_CFLAGS = $(shell pkg-config --cflags openblas 2>/dev/null)
OPENBLAS_LIBS = $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
ifeq ($(BLAS),none)
BLAS_CFLAGS =
BLAS_LIBS =
BLAS_SUFFIX = -noblas
else
BLAS_CFLAGS = $(OPENBLAS_CFLAGS)
BLAS_LIBS = $(OPENBLAS_LIBS)
BLAS_SUFFIX =
endif
JSON_CFLAGS = $(shell pkg-config --cflags jansson 2>/dev/null)
JSON_LIBS = $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -pthread)

VARIANT = release
SANFLAGS =
ifeq ($(SANITIZE),1)
VARIANT = asan
SANFLAGS = -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer
endif
ifeq ($(TSAN),1)
VARIANT = tsan
SANFLAGS = -fsanitize=thread -fno-omit-frame-pointer
# OpenBLAS is not built with -fsanitize=thread: its worker threads' plain
# stores and the spin-wait its caller does on them are invisible, but the libc
# calls they make are intercepted (the memset of sgemm's beta = 0 pass), and
# would be reported as racing with the caller's reads of the product.
# ignore_noninstrumented_modules drops only interceptor accesses made from
# code built without the sanitizer; everything qlib's own code does is checked.
export TSAN_OPTIONS := ignore_noninstrumented_modules=1 $(TSAN_OPTIONS)
endif
B = build/$(VARIANT)$(BLAS_SUFFIX)
# The release libraries of either BLAS choice go to lib/ (what the last
# `make` or `make BLAS=none` built: lib/.blas says which, and switching
# relinks them); each keeps its objects in its own build directory.
ifeq ($(VARIANT),release)
OUT = lib
else
OUT = $(B)/lib
endif

MACHINE := $(shell $(CC) -dumpmachine 2>/dev/null)
KERNEL_SRC = src/kernels/dispatch.c src/kernels/scalar.c
ifneq (,$(findstring x86_64,$(MACHINE)))
KERNEL_SRC += $(wildcard src/kernels/x86_*.c)
endif
ifneq (,$(findstring aarch64,$(MACHINE)))
KERNEL_SRC += $(wildcard src/kernels/arm_*.c)
endif
# The built-in linear algebra: the library's in BLAS=none builds; in OpenBLAS
# builds only the tests and the bench link it (INTERNAL), to compare the two.
LINALG_BUILTIN = src/linalg/builtin.c src/linalg/builtin_gemm.c
ifneq (,$(findstring x86_64,$(MACHINE)))
LINALG_BUILTIN += $(wildcard src/linalg/builtin_gemm_x86_*.c)
endif
ifeq ($(BLAS),none)
LINALG_SRC = src/linalg/blas_none.c $(LINALG_BUILTIN)
LINALG_EXTRA =
else
LINALG_SRC = src/linalg/blas_openblas.c
LINALG_EXTRA = $(LINALG_BUILTIN)
endif
LIB_SRC = $(wildcard src/core/*.c src/schemes/*.c src/layouts/*.c) $(LINALG_SRC) $(KERNEL_SRC)
LIB_OBJ = $(LIB_SRC:%.c=$(B)/obj/%.o)
EXTRA_OBJ = $(LINALG_EXTRA:%.c=$(B)/obj/%.o)

LIB_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -pthread -Iinclude $(BLAS_CFLAGS)
ALL_CFLAGS = $(CFLAGS) $(WARN) $(SANFLAGS)

STATIC = $(OUT)/libqlib.a
INTERNAL = $(B)/libqlib_internal.a
OBJCOPY ?= objcopy
SHARED = $(OUT)/libqlib.so.$(VERSION)
LIBS = $(BLAS_LIBS) -lpthread -lm

TEST_SRC = $(wildcard test/unit/*.c)
TEST_BIN = $(B)/test/unit
DEMO_BIN = $(B)/examples/demo
QUICKSTART_BIN = $(B)/examples/quickstart
BENCH_BIN = $(B)/test/bench
BENCH_SRC = $(filter-out test/bench/ggml_side.c,$(wildcard test/bench/*.c))
AGREE_BIN = $(B)/test/agree
LLAMA_SRC = $(wildcard examples/llama2/*.c)
ifeq ($(BLAS),none)
LLAMA_BIN = $(B)/examples/qlib-llama
# The example's own fp32 products (attention, classifier) call CBLAS.
HAVE_OPENBLAS := $(shell printf '\043include <cblas.h>\n' | $(CC) $(OPENBLAS_CFLAGS) -E -x c - \
    >/dev/null 2>&1 && echo yes)
else
LLAMA_BIN = examples/llama2/qlib-llama
HAVE_OPENBLAS = yes
endif
FUZZ_SRC = $(wildcard test/fuzz/fuzz_*.c)
REPLAY_BINS = $(FUZZ_SRC:test/fuzz/%.c=$(B)/fuzz/replay_%)
DATA ?= ../shared/data

.PHONY: FORCE all check check-run bench bench-ggml demo install uninstall clean fuzz cross-aarch64 \
        check-aarch64 model-check interop-check memory-check deps symbols-check header-check \
        python-check replay valgrind consumer-check deps-check isa-flags linkage-check agree-check \
        bench-peer awq-draws

all: $(STATIC) $(SHARED) $(OUT)/qlib.pc \
     $(if $(and $(LLAMA_SRC),$(filter release,$(VARIANT)),$(HAVE_OPENBLAS)),$(LLAMA_BIN))

# ---- the library ----
$(B)/obj/%.o: %.c include/qlib.h $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) $(ALL_CFLAGS) $(ISA_FLAGS) -c $< -o $@

# Each kernel unit's ISA flags, stated once (ISA_FLAGS_<unit>). `make -s
# isa-flags` prints every library unit this compiler builds with its ISA
# flags (test/fuzz/run.sh compiles the library with clang from that list).
ISA_FLAGS_x86_avx2 = -mavx2 -mfma -mf16c
ISA_FLAGS_x86_avx2_vnni = $(ISA_FLAGS_x86_avx2) -mavxvnni
ISA_FLAGS_x86_avx2_avx512vnni = $(ISA_FLAGS_x86_avx2) -mavx512vnni -mavx512vl
ISA_FLAGS_x86_avx512 = -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mfma -mf16c
ISA_FLAGS_arm_neon_dotprod = -march=armv8.2-a+dotprod
$(B)/obj/src/kernels/%.o: ISA_FLAGS = $(ISA_FLAGS_$(basename $(notdir $@)))
# The built-in linear algebra rounds every product and sum on its own, so
# that each GEMM variant gives the same bits (src/linalg/builtin_gemm.c).
ISA_FLAGS_builtin = -ffp-contract=off
ISA_FLAGS_builtin_gemm = -ffp-contract=off
ISA_FLAGS_builtin_gemm_x86_avx2 = -ffp-contract=off -mavx2
$(B)/obj/src/linalg/%.o: ISA_FLAGS = $(ISA_FLAGS_$(basename $(notdir $@)))
# units that compile another one again with their own flags
$(B)/obj/src/kernels/x86_avx2_vnni.o $(B)/obj/src/kernels/x86_avx2_avx512vnni.o: src/kernels/x86_avx2.c
$(B)/obj/src/kernels/arm_neon_dotprod.o: src/kernels/arm_neon.c
$(B)/obj/src/linalg/builtin_gemm_x86_avx2.o: src/linalg/builtin_gemm.c

isa-flags:
	@$(foreach f,$(LIB_SRC),printf '%s %s\n' '$(f)' '$(strip $(ISA_FLAGS_$(basename $(notdir $(f)))))';)

# The installed static library is one relocatable object in which only the
# public symbols (abi/qlib.symbols) stay global, as in the shared library.
# Tests, fuzzers and the bench reach the internals through INTERNAL.
$(B)/qlib_all.o: $(LIB_OBJ)
	$(CC) -nostdlib -no-pie -Wl,-r -o $@ $(LIB_OBJ)

$(OUT)/.blas: FORCE
	@mkdir -p $(OUT)
	@printf '%s\n' '$(BLAS)' | cmp -s - $@ || printf '%s\n' '$(BLAS)' > $@

$(STATIC): $(B)/qlib_all.o abi/qlib.symbols $(OUT)/.blas
	@mkdir -p $(OUT)
	rm -f $@
	$(OBJCOPY) --keep-global-symbols=abi/qlib.symbols $(B)/qlib_all.o $(B)/qlib_public.o
	$(AR) rcs $@ $(B)/qlib_public.o

$(INTERNAL): $(LIB_OBJ) $(EXTRA_OBJ)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJ) $(EXTRA_OBJ)

$(SHARED): $(LIB_OBJ) src/qlib.map $(OUT)/.blas
	@mkdir -p $(OUT)
	$(CC) -shared $(ALL_CFLAGS) -o $@ $(LIB_OBJ) -Wl,-soname,libqlib.so.$(VERSION_MAJOR) \
	    -Wl,--version-script=src/qlib.map -Wl,--no-undefined $(LIBS)
	ln -sf libqlib.so.$(VERSION) $(OUT)/libqlib.so.$(VERSION_MAJOR)
	ln -sf libqlib.so.$(VERSION_MAJOR) $(OUT)/libqlib.so

# ---- what an installed copy tells its consumers (pkg-config, CMake) ----
# The files name the prefix they are installed under: install.vars changes
# whenever PREFIX, LIBDIR_INSTALL, INCDIR_INSTALL or the link line do, and
# they are made again from it (`make install PREFIX=X` after a plain `make`).
# A static consumer needs what the library links: OpenBLAS through its own
# pkg-config file when it has one (it adds -lgfortran for a -static link).
PC_REQUIRES_PRIVATE = $(if $(and $(findstring -lopenblas,$(BLAS_LIBS)),$(shell pkg-config --exists openblas 2>/dev/null && echo y)),openblas)
PC_LIBS_PRIVATE = $(if $(PC_REQUIRES_PRIVATE),,$(BLAS_LIBS))
INSTALL_VARS = $(PREFIX)|$(LIBDIR_INSTALL)|$(INCDIR_INSTALL)|$(VERSION)|$(PC_REQUIRES_PRIVATE)|$(PC_LIBS_PRIVATE)|$(BLAS_LIBS)|$(CC)

$(B)/install.vars: FORCE
	@mkdir -p $(B)
	@printf '%s\n' '$(INSTALL_VARS)' | cmp -s - $@ || printf '%s\n' '$(INSTALL_VARS)' > $@

$(OUT)/qlib.pc: qlib.pc.in include/qlib.h $(B)/install.vars
	@mkdir -p $(OUT)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR_INSTALL)|g' \
	    -e 's|@INCLUDEDIR@|$(INCDIR_INSTALL)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@REQUIRES_PRIVATE@|$(PC_REQUIRES_PRIVATE)|' -e 's|@LIBS_PRIVATE@|$(PC_LIBS_PRIVATE)|' \
	    -e '/^Requires.private: *$$/d' -e 's|: *|: |' qlib.pc.in > $@

# CMake: qlib::qlib (shared, or static with QLIB_USE_STATIC) and
# qlib::qlib_static, found relative to the config file's own directory
# (<libdir>/cmake/qlib), so a staged or moved tree works; the include
# directory too when it is <prefix>/include beside <prefix>/lib.
CMAKE_OUT = $(OUT)/cmake/qlib
empty :=
space := $(empty) $(empty)
cmake_list = $(subst $(space),;,$(strip $(1)))
CMAKE_INCLUDEDIR = $(if $(and $(filter $(PREFIX)/lib,$(LIBDIR_INSTALL)),$(filter $(PREFIX)/include,$(INCDIR_INSTALL))),$${_qlib_libdir}/../include,$(INCDIR_INSTALL))
STATIC_DEPS = $(BLAS_LIBS) -lpthread -lm
SIZEOF_VOID_P = $(shell printf '__SIZEOF_POINTER__\n' | $(CC) -E -P -x c - 2>/dev/null | tail -n 1)

$(CMAKE_OUT)/%.cmake: cmake/%.cmake.in include/qlib.h $(B)/install.vars
	@mkdir -p $(CMAKE_OUT)
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(VERSION_MAJOR)|g' \
	    -e 's|@CMAKE_INCLUDEDIR@|$(CMAKE_INCLUDEDIR)|g' -e 's|@SIZEOF_VOID_P@|$(SIZEOF_VOID_P)|g' \
	    -e 's|@STATIC_DEPS_DOC@|$(strip $(STATIC_DEPS))|g' \
	    -e 's|@STATIC_LINK_DIRS@|$(call cmake_list,$(patsubst -L%,%,$(filter -L%,$(STATIC_DEPS))))|g' \
	    -e 's|@STATIC_LINK_LIBS@|$(call cmake_list,$(patsubst -l%,%,$(filter -l%,$(STATIC_DEPS))))|g' \
	    -e 's|@STATIC_LINK_OPTIONS@|$(call cmake_list,$(filter-out -L% -l%,$(STATIC_DEPS)))|g' $< > $@

# ---- programs ----
$(TEST_BIN): $(TEST_SRC) $(wildcard test/unit/*.h) $(INTERNAL)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude -Isrc $(ALL_CFLAGS) $(CHECK_CFLAGS) -o $@ $(TEST_SRC) \
	    $(INTERNAL) $(CHECK_LIBS) $(LIBS)

$(DEMO_BIN): examples/demo/demo.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude $(ALL_CFLAGS) $(OPENBLAS_CFLAGS) -o $@ $< $(STATIC) \
	    $(LIBS) $(if $(BLAS_LIBS),,$(OPENBLAS_LIBS))

$(QUICKSTART_BIN): examples/quickstart.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Iinclude $(ALL_CFLAGS) -o $@ $< $(STATIC) $(LIBS)

# The OpenBLAS build's bench times GPTQ and AWQ with both linear algebras in
# one process: it links the BLAS=none build's library too, every global
# symbol of it renamed nb_<name> (test/bench/linalg.c).
ifeq ($(BLAS),none)
BENCH_PEER =
else
BENCH_PEER = $(B)/qlib_noblas.o
$(BENCH_PEER): bench-peer
	nm -g --defined-only build/$(VARIANT)-noblas/qlib_all.o | \
	    awk 'NF == 3 { print $$3, "nb_" $$3 }' > $@.syms
	$(OBJCOPY) --redefine-syms=$@.syms build/$(VARIANT)-noblas/qlib_all.o $@
bench-peer:
	@$(MAKE) --no-print-directory BLAS=none build/$(VARIANT)-noblas/qlib_all.o
endif

$(BENCH_BIN): $(BENCH_SRC) $(wildcard test/bench/*.h) $(INTERNAL) $(BENCH_PEER)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude -Isrc $(ALL_CFLAGS) $(OPENBLAS_CFLAGS) \
	    -DQLIB_BENCH_PEER=$(if $(BENCH_PEER),1,0) -o $@ $(BENCH_SRC) $(INTERNAL) \
	    $(BENCH_PEER) $(LIBS) $(if $(BLAS_LIBS),,$(OPENBLAS_LIBS))

$(AGREE_BIN): test/agree/agree.c test/bench/rng.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude $(ALL_CFLAGS) -o $@ $< $(STATIC) $(LIBS)

$(LLAMA_BIN): $(LLAMA_SRC) $(wildcard examples/llama2/*.h) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude $(ALL_CFLAGS) $(OPENBLAS_CFLAGS) $(JSON_CFLAGS) -o $@ \
	    $(LLAMA_SRC) $(STATIC) $(JSON_LIBS) $(LIBS) $(if $(BLAS_LIBS),,$(OPENBLAS_LIBS))

$(B)/fuzz/replay_%: test/fuzz/%.c test/fuzz/replay.c $(INTERNAL) test/fuzz/fuzz.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude -Isrc $(ALL_CFLAGS) -o $@ $< test/fuzz/replay.c \
	    $(INTERNAL) $(LIBS)

# the layout targets share their driver
$(filter $(B)/fuzz/replay_fuzz_layout_%,$(REPLAY_BINS)): test/fuzz/fuzz_layout.h

# the llama2 example's file readers, for test/fuzz/fuzz_llama_*.c
LLAMA_READERS = $(filter $(addprefix examples/llama2/,util.c model.c qmodel.c tokenizer.c source.c gguf.c \
    safetensors.c hf.c hfquant.c dtype.c),$(LLAMA_SRC))
$(B)/fuzz/replay_fuzz_llama_%: test/fuzz/fuzz_llama_%.c test/fuzz/replay.c $(LLAMA_READERS) \
        $(INTERNAL) test/fuzz/fuzz.h examples/llama2/llama.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -Iexamples/llama2 $(ALL_CFLAGS) $(JSON_CFLAGS) -o $@ $< \
	    test/fuzz/replay.c $(LLAMA_READERS) $(INTERNAL) $(JSON_LIBS) $(LIBS)

# ---- the two commands of the README ----
deps:
	@BLAS=$(BLAS) sh scripts/deps.sh

demo: deps
	@$(MAKE) --no-print-directory $(DEMO_BIN)
	@$(DEMO_BIN)

check: deps
	@$(MAKE) --no-print-directory check-run

check-run: all $(TEST_BIN) $(QUICKSTART_BIN) $(REPLAY_BINS)
	@$(MAKE) --no-print-directory symbols-check header-check
	$(TEST_BIN)
	@$(QUICKSTART_BIN) > /dev/null && echo "quickstart: ok"
	@$(MAKE) --no-print-directory replay
ifeq ($(BLAS)$(VARIANT),nonerelease)
	@$(MAKE) --no-print-directory linkage-check
endif
ifeq ($(VARIANT),release)
	@$(MAKE) --no-print-directory python-check
	@if [ -z "$(HAVE_OPENBLAS)" ]; then echo "model-check: SKIPPED (examples/llama2 needs CBLAS)"; \
	 elif [ -d "$(DATA)" ] && [ -n "$(LLAMA_SRC)" ]; then $(MAKE) --no-print-directory model-check; \
	 else echo "model-check: SKIPPED (no model data in $(DATA); make check DATA=<dir>, see README.md)"; fi
ifeq ($(BLAS),none)
	@echo "interop-check: not repeated for BLAS=none (the GGUF writer is the example's, the same in both builds; agree-check compares the quantized tensors)"
else
	@if [ -n "$(LLAMA_SRC)" ]; then $(MAKE) --no-print-directory interop-check; fi
endif
ifeq ($(BLAS),none)
	@if [ -n "$(HAVE_OPENBLAS)" ]; then $(MAKE) --no-print-directory agree-check; \
	 else echo "agree-check: SKIPPED (needs OpenBLAS for the build to compare with)"; fi
endif
endif

symbols-check: $(SHARED)
	@nm -D --defined-only $(SHARED) | awk '$$2 == "T" {print $$3}' | sed 's/@.*//' | sort > $(B)/symbols.txt
	@if diff -u abi/qlib.symbols $(B)/symbols.txt; then echo "symbols: $$(wc -l < abi/qlib.symbols) exported, as committed"; \
	 else echo "symbols: exported list differs from abi/qlib.symbols"; exit 1; fi

header-check:
	@mkdir -p $(B)
	@printf '#include "qlib.h"\nint main(void) { return qlib_version_number() == 0; }\n' > $(B)/hdr.c
	@$(CC) -std=c99 -Wall -Wextra -pedantic -Werror -Iinclude -c $(B)/hdr.c -o $(B)/hdr_c.o
	@c++ -x c++ -std=c++11 -Wall -Wextra -pedantic -Werror -Iinclude -c $(B)/hdr.c -o $(B)/hdr_cpp.o
	@echo "header: compiles as C99 and C++"

replay: $(REPLAY_BINS)
	@for b in $(REPLAY_BINS); do t=$${b##*/replay_}; $$b test/fuzz/corpus/$$t || exit 1; done

# `make python-check SANITIZE=1`: the interpreter is not built with ASan, so
# the runtimes are preloaded; its own leaks are not ours (the tests count the
# library's allocations through a Python allocator instead).
ifeq ($(VARIANT),asan)
PY_SAN = LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	 ASAN_OPTIONS=detect_leaks=0$${ASAN_OPTIONS:+:$$ASAN_OPTIONS}
endif
python-check: $(SHARED)
	@if $(PYTHON) -c 'import numpy, pytest' 2>/dev/null && [ -d test/python ]; then \
	   $(PY_SAN) QLIB_LIBRARY=$(CURDIR)/$(SHARED) PYTHONPATH=$(CURDIR)/python $(PYTHON) -m pytest -q test/python; \
	 else echo "python tests: skipped (need $(PYTHON) with numpy and pytest)"; fi

model-check: $(LLAMA_BIN)
	@QLIB_DATA=$(DATA) QLIB_LLAMA=$(LLAMA_BIN) bash test/model/run.sh
	@QLIB_DATA=$(DATA) QLIB_LLAMA=$(LLAMA_BIN) bash test/model/cli.sh
	@QLIB_DATA=$(DATA) QLIB_LLAMA=$(LLAMA_BIN) bash test/model/formats.sh

# GGUF files written by qlib-llama, run by llama.cpp (npm node-llama-cpp, under build/interop)
interop-check: $(LLAMA_BIN)
	@QLIB_DATA=$(DATA) QLIB_LLAMA=$(LLAMA_BIN) bash test/interop/run.sh

# what AWQ's shared scales cost over DRAWS (16) calibration draws, with
# SCALES (act, duo or both: --awq-scales) (a measurement, a few minutes: not
# part of check)
awq-draws: $(LLAMA_BIN)
	@DRAWS=$(or $(DRAWS),16) SCALES=$(or $(SCALES),act) QLIB_DATA=$(DATA) QLIB_LLAMA=$(LLAMA_BIN) bash test/model/awq_draws.sh

# quantize of a synthetic 0.9 GB Llama under a memory bound (slow: not part of check)
memory-check: $(LLAMA_BIN)
	@bash test/model/memory.sh

# GPTQ and AWQ of this build agree with the OpenBLAS build's, which is made
# (build/$(VARIANT), lib/) if needed: test/agree/run.sh.
AGREE_REF = build/$(VARIANT)/test/agree
agree-check: $(AGREE_BIN) $(LLAMA_BIN)
	@$(MAKE) --no-print-directory BLAS=openblas OUT=build/$(VARIANT)/lib $(AGREE_REF) examples/llama2/qlib-llama
	@QLIB_DATA=$(DATA) bash test/agree/run.sh $(AGREE_REF) $(AGREE_BIN) \
	    $(if $(LLAMA_SRC),examples/llama2/qlib-llama $(LLAMA_BIN))

# BLAS=none: the library needs nothing beyond the C library (libc, libm,
# libpthread, the loader), and its pkg-config file says so.
STRIP ?= strip
linkage-check: $(SHARED) $(OUT)/qlib.pc
	@needed=$$(readelf -d $(SHARED) | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' '); \
	 for lib in $$needed; do case $$lib in libc.so.*|libm.so.*|libpthread.so.*|ld-linux*) ;; \
	   *) echo "linkage: $(SHARED) needs $$lib"; exit 1 ;; esac; done; \
	 if grep -qi blas $(OUT)/qlib.pc; then echo "linkage: $(OUT)/qlib.pc names a BLAS"; exit 1; fi; \
	 $(STRIP) -o $(B)/libqlib.stripped.so $(SHARED) && \
	 echo "linkage: $(SHARED) needs only $$(echo $$needed); stripped $$(wc -c < $(B)/libqlib.stripped.so) bytes"

# VALGRIND_SUITES="core serialize ...": only those unit suites (default: all;
# valgrind runs them 30-100x slower than natively).
VALGRIND = CK_FORK=no valgrind --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --suppressions=test/valgrind.supp
valgrind: $(TEST_BIN)
ifeq ($(strip $(VALGRIND_SUITES)),)
	$(VALGRIND) $(TEST_BIN)
else
	@for s in $(VALGRIND_SUITES); do echo "valgrind: suite $$s"; \
	  CK_RUN_SUITE=$$s $(VALGRIND) $(TEST_BIN) || exit 1; done
endif

bench: deps
	@$(MAKE) --no-print-directory $(BENCH_BIN)
	@$(BENCH_BIN) $(BENCH)

# Every libFuzzer target for FUZZ_SECONDS each (default 60), with clang.
fuzz:
	@FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) MAKE='$(MAKE)' sh test/fuzz/run.sh

# qlib side by side with ggml (docs/PERFORMANCE.md). GGML_DIR is a ggml
# checkout outside this tree (github.com/ggml-org/ggml); its own cmake builds
# it into build/ggml, static, -march=native, with its CPU repack and
# llamafile's tinyBLAS on (as llama.cpp ships it). BENCH_GGML_QUICK=1: a
# reduced run (test/bench/ggml_side.c lists the other variables).
GGML_BUILD = build/ggml
GGML_CMAKE_FLAGS = -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
    -DGGML_CPU_REPACK=ON -DGGML_LLAMAFILE=ON -DGGML_OPENMP=ON -DGGML_BUILD_TESTS=OFF \
    -DGGML_BUILD_EXAMPLES=OFF -DGGML_CCACHE=OFF
GGML_LIBS = $(GGML_BUILD)/src/libggml.a $(GGML_BUILD)/src/libggml-cpu.a \
    $(GGML_BUILD)/src/libggml-base.a -fopenmp -lstdc++
GGML_BENCH_BIN = $(B)/test/bench_ggml

bench-ggml: deps
	@if [ -z "$(GGML_DIR)" ] || [ ! -f "$(GGML_DIR)/include/ggml.h" ]; then \
	   echo "make bench-ggml GGML_DIR=<a ggml checkout> (github.com/ggml-org/ggml)" >&2; exit 1; fi
	@$(MAKE) --no-print-directory $(STATIC)
	@mkdir -p $(GGML_BUILD) $(dir $(GGML_BENCH_BIN))
	cmake -S "$(GGML_DIR)" -B $(GGML_BUILD) $(GGML_CMAKE_FLAGS) > $(GGML_BUILD)/cmake.log
	cmake --build $(GGML_BUILD) -j2 --target ggml >> $(GGML_BUILD)/cmake.log
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -march=native $(WARN) -Iinclude -I"$(GGML_DIR)/include" \
	    $(BLAS_CFLAGS) -DGGML_COMMIT='"'"$$(git -C "$(GGML_DIR)" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"'"' \
	    -o $(GGML_BENCH_BIN) test/bench/ggml_side.c $(STATIC) $(GGML_LIBS) $(LIBS)
	$(GGML_BENCH_BIN)

# AArch64: cross-built with Debian's gcc-aarch64-linux-gnu against the arm64
# OpenBLAS and Check (dpkg --add-architecture arm64; docs/PERFORMANCE.md),
# run under qemu-user with each NEON kernel table forced.
AARCH64_CC ?= aarch64-linux-gnu-gcc
AARCH64_AR ?= aarch64-linux-gnu-ar
AARCH64_BLAS_CFLAGS ?= -I/usr/include/aarch64-linux-gnu/openblas-pthread
AARCH64_BLAS_LIBS ?= -lopenblas
QEMU_AARCH64 ?= qemu-aarch64

AARCH64_B = build/aarch64$(BLAS_SUFFIX)

cross-aarch64:
	@$(MAKE) --no-print-directory CC=$(AARCH64_CC) AR=$(AARCH64_AR) OBJCOPY=aarch64-linux-gnu-objcopy VARIANT=aarch64 \
	    B=$(AARCH64_B) OUT=$(AARCH64_B)/lib \
	    $(if $(BLAS_LIBS),BLAS_CFLAGS='$(AARCH64_BLAS_CFLAGS)' BLAS_LIBS='$(AARCH64_BLAS_LIBS)') \
	    $(AARCH64_B)/lib/libqlib.a $(AARCH64_B)/lib/libqlib.so.$(VERSION) $(AARCH64_B)/test/unit

# AARCH64_ISAS: the kernel sets the whole unit suite runs with (each run's
# kernel suite also compares every set the emulated CPU has with scalar).
AARCH64_ISAS ?= neon neon-dotprod
check-aarch64: cross-aarch64
	@for isa in $(AARCH64_ISAS); do echo "qemu-aarch64: QLIB_ISA=$$isa"; \
	  QLIB_ISA=$$isa OPENBLAS_NUM_THREADS=1 $(QEMU_AARCH64) $(AARCH64_B)/test/unit || exit 1; done
ifeq ($(BLAS),none)
	@$(MAKE) --no-print-directory CC=$(AARCH64_CC) VARIANT=aarch64 B=$(AARCH64_B) \
	    OUT=$(AARCH64_B)/lib STRIP=aarch64-linux-gnu-strip linkage-check
	$(AARCH64_CC) -std=c99 -Iinclude examples/quickstart.c $(AARCH64_B)/lib/libqlib.a -lm -lpthread \
	    -o $(AARCH64_B)/quickstart
	@$(QEMU_AARCH64) $(AARCH64_B)/quickstart > /dev/null && \
	 echo "quickstart (aarch64): ok, linked with libqlib.a, -lm and -lpthread only"
endif

install: all $(CMAKE_OUT)/qlibConfig.cmake $(CMAKE_OUT)/qlibConfigVersion.cmake
	install -d $(DESTDIR)$(INCDIR_INSTALL) $(DESTDIR)$(LIBDIR_INSTALL)/pkgconfig \
	    $(DESTDIR)$(LIBDIR_INSTALL)/cmake/qlib
	install -m 644 include/qlib.h $(DESTDIR)$(INCDIR_INSTALL)/qlib.h
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR_INSTALL)/libqlib.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR_INSTALL)/libqlib.so.$(VERSION)
	ln -sf libqlib.so.$(VERSION) $(DESTDIR)$(LIBDIR_INSTALL)/libqlib.so.$(VERSION_MAJOR)
	ln -sf libqlib.so.$(VERSION_MAJOR) $(DESTDIR)$(LIBDIR_INSTALL)/libqlib.so
	install -m 644 $(OUT)/qlib.pc $(DESTDIR)$(LIBDIR_INSTALL)/pkgconfig/qlib.pc
	install -m 644 $(CMAKE_OUT)/qlibConfig.cmake $(CMAKE_OUT)/qlibConfigVersion.cmake \
	    $(DESTDIR)$(LIBDIR_INSTALL)/cmake/qlib/

# scripts/deps.sh on this box with OpenBLAS hidden (root, mount namespace).
deps-check:
	@sh test/deps/hidden_openblas.sh

# A fresh install under build/ used as a consumer would (test/install/run.sh).
consumer-check: all
	@sh test/install/run.sh $(CONSUMERS)

uninstall:
	rm -f $(DESTDIR)$(INCDIR_INSTALL)/qlib.h $(DESTDIR)$(LIBDIR_INSTALL)/libqlib.a \
	    $(DESTDIR)$(LIBDIR_INSTALL)/libqlib.so.$(VERSION) \
	    $(DESTDIR)$(LIBDIR_INSTALL)/libqlib.so.$(VERSION_MAJOR) \
	    $(DESTDIR)$(LIBDIR_INSTALL)/libqlib.so $(DESTDIR)$(LIBDIR_INSTALL)/pkgconfig/qlib.pc \
	    $(DESTDIR)$(LIBDIR_INSTALL)/cmake/qlib/qlibConfig.cmake \
	    $(DESTDIR)$(LIBDIR_INSTALL)/cmake/qlib/qlibConfigVersion.cmake
	-rmdir $(DESTDIR)$(LIBDIR_INSTALL)/cmake/qlib 2>/dev/null

clean:
	rm -rf build lib examples/llama2/qlib-llama
