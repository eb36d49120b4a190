#!/bin/sh
# run.sh - runs one program under socket_wrapper in a fresh, private socket
# directory, and removes the directory afterwards.
#
#   NP_SW_PRELOAD=/usr/lib/x86_64-linux-gnu/libsocket_wrapper.so \
#     tests/socketwrapper/run.sh [--pcap] PROGRAM [ARGS...]
#
# Environment (ctest sets these through the tests' ENVIRONMENT property):
#   NP_SW_PRELOAD                   what to LD_PRELOAD into PROGRAM only (not
#                                   into this shell, mktemp or rm): the
#                                   sanitizer runtime first when it is a shared
#                                   library (gcc's libasan/libtsan), then
#                                   libsocket_wrapper.so
#   SOCKET_WRAPPER_DEFAULT_IFACE    default 10 (127.0.0.10)
#   SOCKET_WRAPPER_DISABLE_DEEPBIND 1 under sanitizers (passed through)
#   SOCKET_WRAPPER_PCAP_FILE        if set by the caller, kept: a capture for
#                                   debugging (open it with wireshark/tcpdump)
# --pcap captures into the private directory instead (for the test that checks
# the capture itself). Exit status: PROGRAM's.
set -eu

pcap=0
if [ "${1:-}" = "--pcap" ]; then
  pcap=1
  shift
fi
if [ $# -lt 1 ]; then
  echo "usage: run.sh [--pcap] PROGRAM [ARGS...]" >&2
  exit 2
fi
if [ -z "${NP_SW_PRELOAD:-}" ]; then
  echo "run.sh: NP_SW_PRELOAD is not set (path of libsocket_wrapper.so)" >&2
  exit 2
fi

# Unix socket paths are limited to 108 bytes: keep the directory short.
base=${TMPDIR:-/tmp}
if [ ${#base} -gt 64 ]; then base=/tmp; fi
dir=$(mktemp -d "$base/npsw.XXXXXX")
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM

export SOCKET_WRAPPER_DIR="$dir"
export SOCKET_WRAPPER_DEFAULT_IFACE="${SOCKET_WRAPPER_DEFAULT_IFACE:-10}"
if [ $pcap = 1 ]; then
  export SOCKET_WRAPPER_PCAP_FILE="$dir/trace.pcap"
fi

rc=0
LD_PRELOAD="$NP_SW_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}" "$@" || rc=$?
exit $rc
