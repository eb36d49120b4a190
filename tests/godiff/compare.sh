#!/bin/sh
# compare.sh GO GODIFF_GO BUILDDIR GODIFF_C - builds the Go oracle
# (godiff.go) with GO (cache in BUILDDIR), runs it and the netpoll twin GODIFF_C,
# and requires identical output (one `<name> <outcome...>` line per
# scenario). GO empty or missing: exit 77 (ctest SKIP_RETURN_CODE).
set -u
if [ $# -ne 4 ]; then
  echo "usage: compare.sh GO GODIFF_GO BUILDDIR GODIFF_C" >&2
  exit 2
fi
go=$1
src=$2
dir=$3
twin=$4
if [ -z "$go" ] || [ ! -x "$go" ]; then
  echo "SKIPPED: go not found (install golang-go to run the Go differential test)"
  exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/godiff.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

# Go standard library only: no network, no modules; the build cache lives in
# BUILDDIR, the binary in the private temp dir (concurrent runs don't race).
mkdir -p "$dir/gocache" "$dir/gopath" || exit 2
dir=$(cd "$dir" && pwd) || exit 2 # go wants absolute GOCACHE / GOPATH
if ! env GOCACHE="$dir/gocache" GOPATH="$dir/gopath" GO111MODULE=off GOFLAGS= CGO_ENABLED=0 \
    GOTOOLCHAIN=local "$go" build -o "$tmp/godiff_go" "$src"; then
  echo "FAIL: go build of $src failed"
  exit 1
fi
echo "oracle: $("$go" version)"

"$tmp/godiff_go" >"$tmp/go.out" 2>"$tmp/go.err"
grc=$?
"$twin" >"$tmp/c.out" 2>"$tmp/c.err"
crc=$?

status=0
if [ $grc -ne 0 ]; then
  echo "FAIL: the Go oracle exited with $grc:"
  cat "$tmp/go.err"
  status=1
fi
if [ $crc -ne 0 ]; then
  echo "FAIL: the C twin exited with $crc:"
  cat "$tmp/c.err"
  status=1
fi
lines=$(wc -l <"$tmp/go.out")
if [ "$lines" -lt 20 ]; then
  echo "FAIL: the Go oracle printed only $lines scenarios"
  status=1
fi
if ! cmp -s "$tmp/go.out" "$tmp/c.out"; then
  echo "FAIL: netpoll differs from Go (- Go, + netpoll):"
  diff -u "$tmp/go.out" "$tmp/c.out" | tail -n +3
  status=1
fi
if [ $status -ne 0 ]; then
  echo "--- Go output:"
  cat "$tmp/go.out"
  echo "--- netpoll output:"
  cat "$tmp/c.out"
  exit 1
fi
cat "$tmp/c.out"
echo "PASS: $lines scenarios, netpoll and Go agree"
exit 0
