#!/bin/sh
# `make consumer-check`: installs the library into a fresh prefix (after
# whatever build the tree holds, made with the default prefix) and builds
# examples/quickstart.c there the way a consumer would, then runs it:
#
#   pkgconfig   cc app.c $(pkg-config --cflags --libs qlib), and a -static
#               link from pkg-config --static
#
#   sh test/install/run.sh [pkgconfig ...]     default: all of them
#
# Nothing but the installed tree is used: the consumers see the prefix
# through PKG_CONFIG_PATH and run with LD_LIBRARY_PATH naming its lib/.
set -eu
cd "$(dirname "$0")/../.."
MAKE=${MAKE:-make}
CC=${CC:-cc}
consumers=${*:-pkgconfig}

mkdir -p build
prefix=$(mktemp -d "$PWD/build/consumer.XXXXXX")
work="$prefix/work"
mkdir -p "$work"
fail() { echo "consumer-check: $* (the install is kept in $prefix)" >&2; exit 1; }

$MAKE -s --no-print-directory install PREFIX="$prefix" >/dev/null
libdir="$prefix/lib"
test -f "$prefix/include/qlib.h" || fail "qlib.h not installed under $prefix"

# Runs a built consumer from the work directory; it must use the installed
# shared library (when it is dynamic) and print what quickstart prints.
run() {
    exe=$1
    if ldd "$exe" >/dev/null 2>&1; then
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
        run "$work/quickstart_pc_static"
        echo "consumer pkg-config: shared and -static quickstart built from $pc, ran"
        ;;
    *) fail "unknown consumer $c" ;;
    esac
done
rm -rf "$prefix"
