#!/bin/sh
# `make fuzz`: builds every libFuzzer target test/fuzz/fuzz_*.c with clang
# (-fsanitize=fuzzer,address,undefined) against the library sources and runs
# each for FUZZ_SECONDS (default 60), seeded with test/fuzz/corpus/<target>/.
# New inputs go to build/fuzz/corpus/<target>/, crashes to
# build/fuzz/artifacts/; the committed seeds are never written. Replay a
# crash with build/fuzz/<target> <file>, or through the plain driver:
# make build/release/fuzz/replay_<target> && build/release/fuzz/replay_<target> <file>.
#
#   FUZZ_SECONDS=600 FUZZ_TARGETS="fuzz_load fuzz_calib" sh test/fuzz/run.sh
#   FUZZ_ARGS="-jobs=2 -workers=2"      extra libFuzzer arguments
#
# Needs clang and its runtime (Debian: clang, libclang-rt-14-dev); installs
# them with apt-get when missing and possible.
#
# `sh test/fuzz/run.sh seeds` regenerates the seeds written by make_corpus.c
# (files named NNN-*); inputs kept from past findings (other names) stay.
set -eu
cd "$(dirname "$0")/../.."
# the example's readers, for the fuzz_llama_* targets
LLAMA_READERS="examples/llama2/util.c examples/llama2/model.c examples/llama2/qmodel.c examples/llama2/tokenizer.c
    examples/llama2/source.c examples/llama2/gguf.c examples/llama2/safetensors.c examples/llama2/hf.c
    examples/llama2/hfquant.c examples/llama2/dtype.c"

if [ "${1:-}" = seeds ]; then
    make -s build/release/libqlib_internal.a
    mkdir -p build/fuzz
    # shellcheck disable=SC2046
    ${CC:-cc} -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc -Iexamples/llama2 -o build/fuzz/make_corpus \
        test/fuzz/make_corpus.c $LLAMA_READERS build/release/libqlib_internal.a \
        $(pkg-config --libs jansson 2>/dev/null || echo -ljansson) \
        $(pkg-config --libs openblas 2>/dev/null || echo -lopenblas) -lpthread -lm
    rm -f test/fuzz/corpus/*/[0-9][0-9][0-9]-*
    mkdir -p test/fuzz/corpus
    build/fuzz/make_corpus test/fuzz/corpus
    du -sh --apparent-size test/fuzz/corpus
    exit 0
fi

CLANG=${CLANG:-clang}
SECS=${FUZZ_SECONDS:-60}
OUT=build/fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
CFLAGS_FUZZ="-std=c11 -D_GNU_SOURCE -g -pthread -Iinclude $(pkg-config --cflags openblas 2>/dev/null || true)"
LIBS="$(pkg-config --libs openblas 2>/dev/null || echo -lopenblas) -lpthread -lm"

have_libfuzzer() {
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
        > "$OUT/probe.c"
    "$CLANG" -fsanitize=fuzzer,address "$OUT/probe.c" -o "$OUT/probe" >/dev/null 2>&1
}

mkdir -p "$OUT/obj" "$OUT/artifacts"
if ! have_libfuzzer; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        echo "fuzz: installing clang libclang-rt-14-dev" >&2
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-rt-14-dev >&2
    fi
    have_libfuzzer || { echo "fuzz: need clang with libFuzzer (Debian: clang libclang-rt-14-dev)" >&2; exit 1; }
fi

# ---- the library, instrumented once (each ISA's unit with only its flags) ----
# The units and their ISA flags are the Makefile's (`make isa-flags` for
# this compiler), so a kernel variant added there is built here the same way.
units=$(${MAKE:-make} -s --no-print-directory isa-flags CC="$CLANG")
[ -n "$units" ] || { echo "fuzz: make isa-flags listed no library units" >&2; exit 1; }
lib_src=$(printf '%s\n' "$units" | cut -d' ' -f1)
isa_flags() {
    printf '%s\n' "$units" | awk -v f="$1" '$1 == f { $1 = ""; print }'
}
# The AVX-512 unit at -O0: clang 14 takes over 10 minutes to optimise it
# with ASan + UBSan (its always-inline steps expand into very large
# functions), 10 s at -O0; the checks stay, the code only runs slower.
opt_level() {
    case "$1" in src/kernels/x86_avx512.c) echo -O0 ;; *) echo -O1 ;; esac
}
compile() {  # source -> object under $OUT/obj
    o="$OUT/obj/$(echo "$1" | tr / _).o"
    # shellcheck disable=SC2046,SC2086
    "$CLANG" $CFLAGS_FUZZ $(opt_level "$1") $SAN -fsanitize=fuzzer-no-link $(isa_flags "$1") -c "$1" -o "$o"
    echo "$o"
}
objs=""
for f in $lib_src; do objs="$objs $(compile "$f")"; done
targets=${FUZZ_TARGETS:-$(ls test/fuzz/fuzz_*.c | sed 's|.*/||; s|\.c$||')}
reader_objs=""
case "$targets" in *fuzz_llama_*)
    for f in $LLAMA_READERS; do reader_objs="$reader_objs $(compile "$f")"; done ;;
esac

# ---- each target ----
status=0
summary=""
for t in $targets; do
    extra=""
    case "$t" in fuzz_llama_*) extra="$reader_objs -Iexamples/llama2 $(pkg-config --libs jansson 2>/dev/null || echo -ljansson)" ;; esac
    # shellcheck disable=SC2086
    "$CLANG" $CFLAGS_FUZZ -O1 -Isrc $SAN -fsanitize=fuzzer "test/fuzz/$t.c" $extra $objs $LIBS -o "$OUT/$t"
    mkdir -p "$OUT/corpus/$t"
    echo "==== $t: ${SECS}s"
    log="$OUT/$t.log"
    # shellcheck disable=SC2086
    if "./$OUT/$t" -max_total_time="$SECS" -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$t-" ${FUZZ_ARGS:-} "$OUT/corpus/$t" "test/fuzz/corpus/$t" \
        > "$log" 2>&1; then
        result="ok"
    else
        result="FAILED (see $log and $OUT/artifacts/)"
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    line="$t: ${execs:-?} executions, ${cov:-cov: ?}, $result"
    echo "$line"
    summary="$summary$line
"
done
printf '\n%s' "$summary"
exit $status
