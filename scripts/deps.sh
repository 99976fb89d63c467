#!/bin/sh
# Installs what qlib needs to build and test, on Debian/Ubuntu; elsewhere it
# says what to install. Quiet when everything is there.
set -e
need=""
have_header() { printf '#include <%s>\n' "$1" | ${CC:-cc} $(pkg-config --cflags openblas check 2>/dev/null) -E -x c - >/dev/null 2>&1; }
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
# BLAS=none builds the library with its own linear algebra (make BLAS=none).
[ "${BLAS:-openblas}" = none ] || have_header cblas.h || need="$need libopenblas-dev"
have_header check.h || need="$need check"
command -v ${CC:-cc} >/dev/null 2>&1 || need="$need gcc"
command -v make >/dev/null 2>&1 || need="$need make"
if ! /usr/bin/python3 -c 'import numpy, pytest' >/dev/null 2>&1; then
    need="$need python3-numpy python3-pytest"
fi
[ -z "$need" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing:$need" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >&2
else
    echo "qlib needs: a C compiler, make, pkg-config, OpenBLAS (CBLAS + LAPACK headers and" >&2
    echo "library), Check (unit tests), and Python 3 with numpy and pytest (binding tests)." >&2
    echo "Missing here:$need (Debian package names). Install them and run make again." >&2
    exit 1
fi
