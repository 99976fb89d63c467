#!/bin/sh
# `make consumer-check`: installs the library into a fresh prefix (after
# whatever build the tree holds, made with the default prefix) and builds
# examples/quickstart.c there the way a consumer would, then runs it:
#
#   pkgconfig   cc app.c $(pkg-config --cflags --libs qlib), and a -static
#               link from pkg-config --static
#   cmake       a five-line CMakeLists.txt with find_package(qlib 0.2),
#               linking qlib::qlib shared, and static with QLIB_USE_STATIC=ON;
#               find_package(qlib 1.0) must not find this version
#   pip         python3 -m venv --system-site-packages, pip install
#               --no-build-isolation --no-index . (offline), then from another
#               directory, with no QLIB_LIBRARY, LD_LIBRARY_PATH or
#               PYTHONPATH: import qlib (the library inside the package),
#               quantize, multiply, save and load
#
#   sh test/install/run.sh [pkgconfig cmake pip]     default: all of them
#
# Nothing but the installed tree is used: the consumers see the prefix
# through PKG_CONFIG_PATH and run with LD_LIBRARY_PATH naming its lib/.
set -eu
cd "$(dirname "$0")/../.."
MAKE=${MAKE:-make}
CC=${CC:-cc}
consumers=${*:-pkgconfig cmake pip}

mkdir -p build
prefix=$(mktemp -d "$PWD/build/consumer.XXXXXX")
work="$prefix/work"
mkdir -p "$work"
fail() { echo "consumer-check: $* (the install is kept in $prefix)" >&2; exit 1; }

$MAKE -s --no-print-directory install PREFIX="$prefix" >/dev/null
libdir="$prefix/lib"
test -f "$prefix/include/qlib.h" || fail "qlib.h not installed under $prefix"

# Runs a built consumer from the work directory; unless it links qlib
# statically (second argument "static"), it must load the installed shared
# library.
run() {
    exe=$1
    if [ "${2:-}" != static ]; then
        LD_LIBRARY_PATH="$libdir" ldd "$exe" | grep -q "$libdir/libqlib.so" || fail "$exe does not load $libdir/libqlib.so.*"
    fi
    (cd "$work" && LD_LIBRARY_PATH="$libdir" "$exe" > "$exe.out") || fail "$exe failed"
    grep -q . "$exe.out" || fail "$exe printed nothing"
    rm -f "$work/quickstart.qlib"
}

for c in $consumers; do
    case $c in
    pkgconfig)
        pc="$libdir/pkgconfig/qlib.pc"
        grep -qx "prefix=$prefix" "$pc" || fail "$pc does not name the prefix $prefix:
$(cat "$pc")"
        export PKG_CONFIG_PATH="$libdir/pkgconfig"
        # shellcheck disable=SC2046
        $CC -std=c99 -Wall -Werror examples/quickstart.c -o "$work/quickstart_pc" \
            $(pkg-config --cflags --libs qlib) || fail "pkg-config --cflags --libs qlib: link failed"
        run "$work/quickstart_pc"
        # shellcheck disable=SC2046
        $CC -std=c99 -Wall -Werror -static examples/quickstart.c -o "$work/quickstart_pc_static" \
            $(pkg-config --static --cflags --libs qlib) || fail "pkg-config --static: link failed"
        ldd "$work/quickstart_pc_static" >/dev/null 2>&1 && fail "the -static consumer is dynamic"
        run "$work/quickstart_pc_static" static
        echo "consumer pkg-config: shared and -static quickstart built from $pc, ran"
        ;;
    cmake)
        command -v cmake >/dev/null 2>&1 || fail "cmake is not installed (Debian: cmake)"
        src="$work/cmake"
        mkdir -p "$src"
        cp examples/quickstart.c "$src/"
        cat > "$src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.13)
project(quickstart C)
find_package(qlib 0.2 REQUIRED)
add_executable(quickstart quickstart.c)
target_link_libraries(quickstart PRIVATE qlib::qlib)
CMAKE
        for kind in shared static; do
            cmake -S "$src" -B "$src/$kind" -DCMAKE_PREFIX_PATH="$prefix" \
                -DQLIB_USE_STATIC=$([ $kind = static ] && echo ON || echo OFF) \
                -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="-Wall -Werror" > "$src/$kind.log" 2>&1 &&
            cmake --build "$src/$kind" >> "$src/$kind.log" 2>&1 ||
                fail "cmake $kind build failed: $(tail -n 20 "$src/$kind.log")"
            exe="$work/quickstart_cmake_$kind"
            cp "$src/$kind/quickstart" "$exe"
            if [ $kind = static ]; then
                LD_LIBRARY_PATH="$libdir" ldd "$exe" | grep -q libqlib && fail "$exe loads libqlib.so"
                nm "$exe" | grep -q ' T qlib_quantize$' || fail "$exe lacks qlib_quantize"
            fi
            run "$exe" $kind
        done
        mkdir -p "$src/newer"
        cat > "$src/newer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.13)
project(versions NONE)
find_package(qlib 1.0 QUIET)
if(qlib_FOUND)
  message(FATAL_ERROR "qlib ${qlib_VERSION} accepted for a 1.0 request")
endif()
find_package(qlib 0.1 REQUIRED)
message(STATUS "qlib ${qlib_VERSION} for a 0.1 request")
CMAKE
        cmake -S "$src/newer" -B "$src/newer/build" -DCMAKE_PREFIX_PATH="$prefix" \
            > "$src/newer.log" 2>&1 || fail "find_package versions: $(tail -n 5 "$src/newer.log")"
        grep -q "qlib $(sed -n 's/^Version: //p' "$libdir/pkgconfig/qlib.pc") for a 0.1 request" \
            "$src/newer.log" || fail "find_package(qlib 0.1) did not report the version"
        echo "consumer CMake: find_package(qlib 0.2) from $libdir/cmake/qlib, shared and" \
             "QLIB_USE_STATIC quickstart built and ran; a 1.0 request refused, 0.1 accepted"
        ;;
    pip)
        py=${PYTHON:-/usr/bin/python3}
        venv="$work/venv"
        $py -m venv --system-site-packages "$venv" > "$work/venv.log" 2>&1 ||
            fail "$py -m venv failed (Debian: python3-venv): $(tail -n 5 "$work/venv.log")"
        "$venv/bin/pip" install --no-build-isolation --no-index . > "$work/pip.log" 2>&1 ||
            fail "pip install failed (offline; Debian: python3-setuptools python3-wheel" \
                 "python3-numpy): $(tail -n 20 "$work/pip.log")"
        mkdir -p "$work/elsewhere"
        # shellcheck disable=SC2016
        (cd "$work/elsewhere" && env -u QLIB_LIBRARY -u LD_LIBRARY_PATH -u PYTHONPATH \
            "$venv/bin/python" - "$venv" > "$work/pip_run.out" 2>&1 <<'PY'
import os, sys
import numpy as np
import qlib
venv = os.path.realpath(sys.argv[1])
lib = os.path.realpath(qlib.library_path())
assert lib.startswith(venv + os.sep) and os.path.dirname(lib) == os.path.dirname(
    os.path.realpath(qlib.__file__)), (lib, qlib.__file__)
assert "torch" not in sys.modules
rng = np.random.default_rng(0)
w = rng.standard_normal((64, 256)).astype(np.float32) * 0.02
x = rng.standard_normal((3, 256)).astype(np.float32)
t = qlib.quantize(w)                       # RTN, no calibration
assert t.method == qlib.Method.RTN
t.save("layer.qlib")
u = qlib.load("layer.qlib")
np.testing.assert_array_equal(x @ t, x @ u)
err = np.linalg.norm(x @ t - x @ t.dequantize().T) / np.linalg.norm(x @ t)
assert err < 0.02, err
print("qlib", qlib.version(), "from", lib)
PY
        ) || fail "the pip-installed package failed: $(cat "$work/pip_run.out")"
        echo "consumer pip: $(tail -n 1 "$work/pip_run.out"), imported from $work/elsewhere"
        ;;
    *) fail "unknown consumer $c" ;;
    esac
done
rm -rf "$prefix"
