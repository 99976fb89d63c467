#!/bin/sh
# ABI check (libabigail's abidw/abidiff, Debian package abigail-tools).
#
#   sh abi/check.sh            rebuild libqlib.so with debug info, dump its ABI
#                              and compare it with abi/qlib-<version>.abi, the
#                              committed dump of the version include/qlib.h
#                              states: any change fails (abidiff exit bit of
#                              value 4, ABIDIFF_ABI_CHANGE), as does an error
#                              (value 1). Against the dumps of earlier releases
#                              of the same major version, an incompatible change
#                              (value 8: a removed symbol) fails too.
#   sh abi/check.sh --update   write abi/qlib-<version>.abi. Refused when a dump
#                              of this version exists and the ABI differs from
#                              it: an ABI change needs a version bump first.
#
# Only what include/qlib.h declares is compared: types defined in the
# library's private headers are opaque in the dump (--headers-dir include
# --drop-private-types), so their layout may change freely.
set -eu
cd "$(dirname "$0")/.."

need_abigail() {
    command -v abidw >/dev/null 2>&1 && command -v abidiff >/dev/null 2>&1 && return 0
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        echo "abi: installing abigail-tools" >&2
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq abigail-tools >&2
    fi
    command -v abidw >/dev/null 2>&1 || { echo "abi: need abidw and abidiff (abigail-tools)" >&2; exit 1; }
}

version=$(sed -n 's/^#define QLIB_VERSION_STRING "\(.*\)".*/\1/p' include/qlib.h)
major=${version%%.*}
B=build/abi
DUMP_FLAGS="--headers-dir include --drop-private-types --exported-interfaces-only --no-corpus-path --no-comp-dir-path"
ref=abi/qlib-$version.abi
new=$B/qlib-$version.abi

need_abigail
mkdir -p "$B"
make -s CFLAGS="-O2 -g" B="$B" OUT="$B/lib" "$B/lib/libqlib.so.$version"
# shellcheck disable=SC2086
abidw $DUMP_FLAGS --out-file "$new" "$B/lib/libqlib.so.$version"

# abidiff old new > report; prints the exit code
compare() {
    rc=0
    abidiff "$1" "$2" > "$B/report.txt" 2>&1 || rc=$?
    echo "$rc"
}

if [ "${1:-}" = --update ]; then
    if [ -f "$ref" ]; then
        rc=$(compare "$ref" "$new")
        if [ "$rc" -ne 0 ]; then
            cat "$B/report.txt"
            echo "abi: the ABI differs from $ref (abidiff exit $rc): bump the version in" \
                 "include/qlib.h before writing a new dump" >&2
            exit 1
        fi
        echo "abi: $ref is up to date"
        exit 0
    fi
    cp "$new" "$ref"
    echo "abi: wrote $ref"
    exit 0
fi

if [ ! -f "$ref" ]; then
    last=$(ls abi/qlib-*.abi 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$last" ]; then
        rc=$(compare "$last" "$new")
        cat "$B/report.txt"
        echo "abi: changes since $last above (abidiff exit $rc)"
    fi
    echo "abi: no committed dump for version $version: review the changes, then run" \
         "sh abi/check.sh --update and commit $ref" >&2
    exit 1
fi

status=0
rc=$(compare "$ref" "$new")
if [ $((rc & 1)) -ne 0 ]; then
    cat "$B/report.txt"
    echo "abi: abidiff failed (exit $rc)" >&2
    status=1
elif [ $((rc & 4)) -ne 0 ]; then
    cat "$B/report.txt"
    echo "abi: the ABI changed against $ref (abidiff exit $rc$([ $((rc & 8)) -ne 0 ] && echo ', incompatible'))." >&2
    echo "abi: if this is deliberate, bump the version in include/qlib.h and run sh abi/check.sh --update" >&2
    status=1
fi
for old in abi/qlib-"$major".*.abi; do
    [ -f "$old" ] && [ "$old" != "$ref" ] || continue
    rc=$(compare "$old" "$new")
    if [ $((rc & 9)) -ne 0 ]; then
        cat "$B/report.txt"
        echo "abi: incompatible with the earlier release $old (abidiff exit $rc)" >&2
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "abi: libqlib.so.$version matches $ref"
exit "$status"
