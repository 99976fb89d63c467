#!/bin/sh
# `make deps-check`: scripts/deps.sh on a box that has the reference BLAS
# (libblas-dev: a cblas.h, -lblas) but no OpenBLAS must ask for
# libopenblas-dev.
#
# How it gets such a box without a second machine: in a private mount
# namespace (unshare -m, root only) Debian's OpenBLAS directories
# /usr/{include,lib}/<multiarch>/openblas-* are covered with empty tmpfs
# mounts, and the files the update-alternatives links of cblas.h, libblas
# and liblapack point into them are filled with the reference (netlib)
# ones of libblas-dev and liblapack-dev. Inside, `cc -lopenblas` and
# `pkg-config openblas` fail and <cblas.h> is netlib's, as on the reported
# box. The test first checks that this holds (else it is SKIPPED, not
# passed), then runs `deps.sh --list` there.
#
# What it does not do: apt-get. dpkg still believes OpenBLAS is installed, so
# an install inside the namespace would do nothing; the install itself is
# what CI exercises for real (.ci/run removes libopenblas-dev, installs
# libblas-dev and runs `make demo`).
set -eu
cd "$(dirname "$0")/../.."

skip() { echo "deps-check: SKIPPED ($*)"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root for a private mount namespace"
command -v unshare >/dev/null 2>&1 || skip "needs unshare (util-linux)"
unshare -m true 2>/dev/null || skip "mount namespaces are not allowed here"
ma=$(${CC:-cc} -print-multiarch 2>/dev/null || true)
[ -n "$ma" ] || skip "no multiarch triplet from ${CC:-cc}"
[ -f "/usr/include/$ma/cblas-netlib.h" ] && [ -e "/usr/lib/$ma/blas/libblas.so" ] ||
    skip "the reference BLAS is not installed (Debian: libblas-dev)"
[ -e "/usr/lib/$ma/lapack/liblapack.so" ] || skip "the reference LAPACK is not installed (Debian: liblapack-dev)"

unshare -m sh -eu -c '
ma=$1
# this namespace only: mounts below do not leak out
mount --make-rprivate / 2>/dev/null || true
for d in /usr/include/$ma/openblas-* /usr/lib/$ma/openblas-*; do
    [ -d "$d" ] && mount -t tmpfs tmpfs "$d"
done
# the alternatives links that pointed into them now lead to netlib
for link in /usr/include/$ma/cblas.h /usr/lib/$ma/libblas.so /usr/lib/$ma/libblas.so.3 \
            /usr/lib/$ma/liblapack.so /usr/lib/$ma/liblapack.so.3; do
    target=$(readlink -f "$link" 2>/dev/null || true)
    case "$target" in /usr/*/$ma/openblas-*) ;; *) continue ;; esac
    mkdir -p "$(dirname "$target")"
    case "$link" in
        */cblas.h) cp "/usr/include/$ma/cblas-netlib.h" "$target" ;;
        */libblas.so*) cp -L "/usr/lib/$ma/blas/$(basename "$link")" "$target" ;;
        */liblapack.so*) cp -L "/usr/lib/$ma/lapack/$(basename "$link")" "$target" ;;
    esac
done

# the box is what the report describes ...
t=$(mktemp -d)
printf "#include <cblas.h>\nint main(void) { float a = 2, c = 0; cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, 1, 1, 1, &a, 1, &a, 1, 0, &c, 1); return c != 4; }\n" > "$t/b.c"
why=""
${CC:-cc} -o "$t/b" "$t/b.c" -lblas >/dev/null 2>&1 && "$t/b" || why="the reference BLAS does not link here"
${CC:-cc} -o "$t/o" "$t/b.c" -lopenblas >/dev/null 2>&1 && why="OpenBLAS still links (-lopenblas)"
pkg-config --exists openblas 2>/dev/null && why="pkg-config still finds openblas"
grep -q OPENBLAS "$(readlink -f /usr/include/$ma/cblas.h)" 2>/dev/null && why="cblas.h is still OpenBLAS'\''s"
rm -rf "$t"
if [ -n "$why" ]; then echo "deps-check: SKIPPED (could not hide OpenBLAS: $why)"; exit 0; fi
echo "deps-check: OpenBLAS hidden; <cblas.h> and -lblas are the reference BLAS"

# ... and deps.sh asks for OpenBLAS there
out=$(sh scripts/deps.sh --list)
echo "deps.sh --list: $(echo $out)"
echo "$out" | grep -qx libopenblas-dev || { echo "deps-check: FAILED: deps.sh does not ask for libopenblas-dev"; exit 1; }
echo "deps-check: ok"
' sh "$ma"
