#!/bin/sh
# Installs what qlib needs to build and test, on Debian/Ubuntu; elsewhere it
# says what to install. Quiet when everything is there.
#
#   sh scripts/deps.sh          install what is missing (apt-get, through sudo
#                               when not root)
#   sh scripts/deps.sh --list   print the missing Debian packages, one a line,
#                               and install nothing
#
# Each dependency is tested for what the build uses, not for a file that
# another package may also provide: OpenBLAS by compiling, linking and
# running a program that calls cblas_sgemm and LAPACK's spotrf_ with the
# flags the Makefile uses (pkg-config openblas, else -lopenblas). The
# reference BLAS of libblas-dev also installs a cblas.h, but no -lopenblas.
set -e
CC=${CC:-cc}
list_only=0
[ "${1:-}" = --list ] && list_only=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qlib-deps.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

have_openblas() {
    cat > "$tmp/blas.c" <<'C'
#include <stddef.h>
#include <cblas.h>
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);
int main(void)
{
    float a = 4.0f, c = 0.0f;
    int n = 1, info = -1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, 1, 1, 1.0f, &a, 1, &a, 1, 0.0f, &c, 1);
    spotrf_("U", &n, &a, &n, &info, 1);
    return !(c == 16.0f && info == 0 && a == 2.0f);
}
C
    # shellcheck disable=SC2046
    $CC $(pkg-config --cflags openblas 2>/dev/null) -o "$tmp/blas" "$tmp/blas.c" \
        $(pkg-config --libs openblas 2>/dev/null || echo -lopenblas) >/dev/null 2>&1 &&
        OPENBLAS_NUM_THREADS=1 "$tmp/blas"
}
have_check() {
    printf '#include <check.h>\nint main(void) { return suite_create("x") == 0; }\n' > "$tmp/check.c"
    # shellcheck disable=SC2046
    $CC $(pkg-config --cflags check 2>/dev/null) -o "$tmp/check" "$tmp/check.c" \
        $(pkg-config --libs check 2>/dev/null || echo -lcheck) >/dev/null 2>&1
}

need=""
command -v $CC >/dev/null 2>&1 || need="$need gcc"
command -v make >/dev/null 2>&1 || need="$need make"
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
# BLAS=none builds the library with its own linear algebra (make BLAS=none).
[ "${BLAS:-openblas}" = none ] || have_openblas || need="$need libopenblas-dev"
have_check || need="$need check"
have_jansson() {
    printf '#include <jansson.h>\nint main(void) { json_t *j = json_object(); json_decref(j); return 0; }\n' > "$tmp/json.c"
    # shellcheck disable=SC2046
    $CC $(pkg-config --cflags jansson 2>/dev/null) -o "$tmp/json" "$tmp/json.c" \
        $(pkg-config --libs jansson 2>/dev/null || echo -ljansson) >/dev/null 2>&1
}
have_jansson || need="$need libjansson-dev"
if ! /usr/bin/python3 -c 'import numpy, pytest' >/dev/null 2>&1; then
    need="$need python3-numpy python3-pytest"
fi
if [ $list_only = 1 ]; then
    for p in $need; do echo "$p"; done
    exit 0
fi
[ -z "$need" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing:$need" >&2
    $SUDO apt-get update -qq >&2
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >&2
    if ! have_openblas; then
        echo "OpenBLAS is installed but a program calling cblas_sgemm and spotrf_ still does" >&2
        echo "not link with -lopenblas (pkg-config --libs openblas: $(pkg-config --libs openblas 2>&1))." >&2
        exit 1
    fi
else
    echo "qlib needs: a C compiler, make, pkg-config, OpenBLAS (CBLAS + LAPACK headers and" >&2
    echo "library), Check (unit tests), jansson (the model tool's JSON), and Python 3 with" >&2
    echo "numpy and pytest (binding tests)." >&2
    echo "Missing here:$need (Debian package names). Install them and run make again." >&2
    exit 1
fi
