#!/usr/bin/env bash
# install-check.sh - installs netpoll into a temporary prefix and uses it the
# way a user would: the consumer in tests/install/ built with CMake
# (find_package, shared and static) and with plain cc + pkg-config, each run.
# Also checks what is installed (and what is not: netpoll_testhooks), and that
# the shared library exports nothing but the np_ API.
#
#   ci/install-check.sh          (BUILD=dir to reuse a configured build dir;
#                                 default build-ci-install, plain, no tests)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-ci-install}
CC=${CC:-gcc}
JOBS=${JOBS:-$(nproc)}

say() { printf '== install-check: %s\n' "$*"; }
die() { printf 'install-check: FAIL: %s\n' "$*" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/netpoll-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix

say "build ($BUILD) and install into $PREFIX"
# CC picks the compiler on the first configure of $BUILD only (no cache reset later).
CC=$CC cmake -S . -B "$BUILD" -DBUILD_TESTING=OFF -DNP_SANITIZE=none >/dev/null
cmake --build "$BUILD" -j "$JOBS" >/dev/null
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null

say "installed files"
(cd "$PREFIX" && find . \( -type f -o -type l \) | sort | sed 's/^/   /')
SO=$(find "$PREFIX" -name libnetpoll.so -print -quit)
[ -n "$SO" ] || die "libnetpoll.so not installed"
LIBDIR=$(dirname "$SO")
[ -f "$PREFIX/include/netpoll.h" ] || die "include/netpoll.h not installed"
for f in libnetpoll.so.0 libnetpoll.a pkgconfig/netpoll.pc cmake/netpoll/netpollConfig.cmake \
  cmake/netpoll/netpollConfigVersion.cmake cmake/netpoll/netpollTargets.cmake; do
  [ -e "$LIBDIR/$f" ] || die "$LIBDIR/$f not installed"
done
ls "$LIBDIR"/libnetpoll.so.*.*.* >/dev/null 2>&1 || die "no fully versioned libnetpoll.so.X.Y.Z"
if [ -n "$(find "$PREFIX" -iname '*testhooks*')" ]; then die "netpoll_testhooks was installed"; fi
if grep -rq testhooks "$LIBDIR/cmake"; then die "netpoll_testhooks is in the exported targets"; fi
if [ -n "$(find "$PREFIX" -name 'np_internal.h')" ]; then die "an internal header was installed"; fi

say "exported symbols of libnetpoll.so"
# Everything defined and dynamic must be np_ (not np__); the linker's own
# markers (_init, _fini, _edata, _end, __bss_start) are allowed.
syms=$(nm -D --defined-only "$SO" | awk '{print $NF}')
[ -n "$syms" ] || die "no dynamic symbols in $SO"
bad=$(printf '%s\n' "$syms" | grep -v '^np_' | grep -Ev '^(_init|_fini|_edata|_end|__bss_start)$' || true)
internal=$(printf '%s\n' "$syms" | grep '^np__' || true)
[ -z "$bad$internal" ] || die "non-API symbols exported: $(tr '\n' ' ' <<<"$bad $internal")"
echo "   $(printf '%s\n' "$syms" | grep -c '^np_') np_ symbols, nothing else"
for f in np_poller_create np_poller_destroy np_open np_close np_free np_read np_write np_accept \
  np_connect np_set_deadline np_strerror np_now np_deadline_after; do
  grep -qx "$f" <<<"$syms" || die "$f not exported"
done

say "consumer via CMake find_package (CMAKE_PREFIX_PATH)"
cmake -S tests/install -B "$TMP/consumer" -DCMAKE_C_COMPILER="$CC" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$TMP/consumer" -j "$JOBS" >/dev/null
LD_LIBRARY_PATH=$LIBDIR "$TMP/consumer/consumer"
# (ldd output is captured first: grep -q closing the pipe early would fail it under pipefail)
deps=$(ldd "$TMP/consumer/consumer")
grep -q "$LIBDIR/libnetpoll.so.0" <<<"$deps" || die "CMake consumer is not linked against the installed libnetpoll.so"
"$TMP/consumer/consumer_static"
"$TMP/consumer/consumer_sim" --seeds 1-100 --quiet
deps=$(ldd "$TMP/consumer/consumer_static")
if grep -q libnetpoll <<<"$deps"; then die "static consumer needs libnetpoll.so"; fi

say "consumer via pkg-config (PKG_CONFIG_PATH)"
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
pkg-config --exists --print-errors netpoll
echo "   version $(pkg-config --modversion netpoll); cflags: $(pkg-config --cflags netpoll); libs: $(pkg-config --libs netpoll); static: $(pkg-config --static --libs netpoll)"
grep -q -- -pthread <<<"$(pkg-config --static --libs netpoll)" || die "Libs.private lacks -pthread"
# shellcheck disable=SC2046  # word splitting of pkg-config output is intended
"$CC" -std=c11 -Wall -Wextra -Werror -o "$TMP/consumer_pc" tests/install/main.c $(pkg-config --cflags --libs netpoll)
LD_LIBRARY_PATH=$LIBDIR "$TMP/consumer_pc"
deps=$(LD_LIBRARY_PATH=$LIBDIR ldd "$TMP/consumer_pc")
grep -q "$LIBDIR/libnetpoll.so.0" <<<"$deps" || die "pkg-config consumer is not linked against the installed libnetpoll.so"

say "a user's test, one source, against both libraries (pkg-config netpoll / netpoll-sim)"
pkg-config --exists --print-errors netpoll-sim
# shellcheck disable=SC2046
"$CC" -std=c11 -Wall -Wextra -Werror -o "$TMP/echo_native" examples/sim/echo_test.c $(pkg-config --cflags --libs netpoll)
# shellcheck disable=SC2046
"$CC" -std=c11 -Wall -Wextra -Werror -o "$TMP/echo_sim" examples/sim/echo_test.c $(pkg-config --cflags --libs netpoll-sim)
LD_LIBRARY_PATH=$LIBDIR "$TMP/echo_native" --seeds 1-3
"$TMP/echo_sim" --seeds 1-300 --quiet
[ -f "$LIBDIR/libnetpoll-sim.a" ] || die "libnetpoll-sim.a not installed"
[ -f "$PREFIX/include/netpoll_test.h" ] || die "netpoll_test.h not installed"

say "OK"
