#!/bin/sh
# Backward compatibility: abi/compat/compat.c, compiled against each earlier
# release's header kept in abi/compat/qlib-<version>.h (never against
# include/qlib.h), must run against the library built now, lib/libqlib.so.<major>.
# The program binds its symbols through the SONAME and the version script's
# nodes exactly as a binary shipped with that release does.
set -eu
cd "$(dirname "$0")/.."

version=$(sed -n 's/^#define QLIB_VERSION_STRING "\(.*\)".*/\1/p' include/qlib.h)
major=${version%%.*}
CC=${CC:-cc}
B=build/compat
make -s "lib/libqlib.so.$version"
mkdir -p "$B"
status=0
found=0
for h in abi/compat/qlib-*.h; do
    [ -f "$h" ] || continue
    old=${h##*/qlib-}
    old=${old%.h}
    [ "${old%%.*}" = "$major" ] || continue   # another major version promises nothing
    found=1
    exe="$B/compat-$old"
    "$CC" -std=c99 -pedantic -Wall -Wextra -Werror -Iabi/compat -DQLIB_HEADER="\"qlib-$old.h\"" \
        abi/compat/compat.c -o "$exe" -Llib -lqlib -lm
    # the binary must need the SONAME, not a particular file
    if ! readelf -d "$exe" | grep -q "NEEDED.*\[libqlib.so.$major\]"; then
        echo "compat: $exe does not depend on libqlib.so.$major" >&2
        status=1
        continue
    fi
    if ! LD_LIBRARY_PATH="$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$exe"; then
        echo "compat: the program built against the $old header fails with libqlib $version" >&2
        status=1
    fi
done
if [ "$found" -eq 0 ]; then
    echo "compat: no header of an earlier $major.x release under abi/compat/" >&2
    exit 1
fi
exit "$status"
