#!/usr/bin/env bash
# deps.sh - installs the Debian 12 (bookworm) packages that building, testing
# and CI need. Non-interactive and idempotent: when everything is already
# installed it changes nothing (and does not even run apt-get update).
# Needs root; uses sudo when run as another user.
set -euo pipefail

PACKAGES=(
  cmake make gcc            # build (gcc brings libasan/libubsan for NP_SANITIZE=address)
  clang libclang-rt-14-dev  # clang build, TSan/ASan runtimes
  llvm                      # llvm-symbolizer (sanitizer stack traces), llvm-profdata
  libcmocka-dev pkg-config  # unit tests; pkg-config also for the install check
  clang-format              # make check-format
  golang-go                 # Go 1.19 sources (reference) and cross-checks
  libsocket-wrapper         # real-socket tests without a real network
  binutils                  # nm (exported-symbol check)
  util-linux                # setarch (TSan fallback when ASLR is too wide)
  git                       # make check-format lists tracked files
  valgrind                  # ctest api_native_valgrind (task stacks registered with memcheck)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
