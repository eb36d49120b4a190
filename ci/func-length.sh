#!/usr/bin/env bash
# ci/func-length.sh [MAX] [FILE...] - functions longer than MAX lines
# (default 70), from the opening line of the definition to its closing brace,
# in clang-formatted C (a definition starts at column 0 and ends at the first
# "}" in column 0). Default files: sim/*.c fuzz/*.c
# tests/conformance/native_runner.c tests/conformance/events_probe.c. Prints
# "file:line: name: N lines" for each; exit 1 if any.
set -u
MAX=${1:-70}
[ $# -gt 0 ] && shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -eq 0 ]; then
  set -- "$ROOT"/sim/*.c "$ROOT"/fuzz/*.c "$ROOT"/tests/conformance/native_runner.c \
    "$ROOT"/tests/conformance/events_probe.c
fi
awk -v max="$MAX" -v root="$ROOT/" '
  FNR == 1 { infn = 0 }
  # a definition: column 0, not a preprocessor line, a comment or a declaration; "(" on the line
  !infn && /^[A-Za-z_][A-Za-z0-9_ \*]*\(/ && !/;[[:space:]]*$/ && !/^(typedef|struct [a-z_]+ \{|static const|extern)/ {
    start = FNR; name = $0; sub(/\(.*/, "", name); n = split(name, w, /[ \*]+/); name = w[n]
    if ($0 ~ /\{[[:space:]]*$/ || $0 ~ /\)[[:space:]]*$/ || $0 ~ /,[[:space:]]*$/) { infn = 1 }
    if ($0 ~ /\{.*\}[[:space:]]*$/) { infn = 0 } # one-line function
    next
  }
  infn && /^\}/ {
    len = FNR - start + 1
    if (len > max) { f = FILENAME; sub(root, "", f); printf "%s:%d: %s: %d lines\n", f, start, name, len; bad = 1 }
    infn = 0
  }
  END { exit bad }
' "$@"
