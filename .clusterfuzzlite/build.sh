#!/bin/bash -eu
# .clusterfuzzlite/build.sh - OSS-Fuzz / ClusterFuzzLite build script: builds
# every fuzz target of fuzz/ into $OUT as fuzz_<target>, with its seed corpus
# ($OUT/fuzz_<target>_seed_corpus.zip, from corpus/<target>/) and dictionary
# ($OUT/fuzz_<target>.dict, from fuzz/dict/<target>.dict).
#
# Inputs (set by the fuzzing service; the same script builds locally):
#   CC, CXX, CFLAGS, CXXFLAGS, LIB_FUZZING_ENGINE, OUT, WORK, SRC
# The source tree is $SRC/netpoll, else $SRC, else the tree this script is in.
#
# Local check (fuzz/README.md):
#   OUT=/tmp/out SRC=$PWD CC=clang CFLAGS="-fsanitize=address,fuzzer-no-link" \
#     LIB_FUZZING_ENGINE=-fsanitize=fuzzer ./.clusterfuzzlite/build.sh
#   /tmp/out/fuzz_lifecycle -runs=1000 /tmp/out/seeds/lifecycle   (or any corpus dir)
#
# With libFuzzer (LIB_FUZZING_ENGINE=-fsanitize=fuzzer) CMake builds the
# fuzz_<target> executables itself (NP_FUZZ_ENGINE=libfuzzer links them with
# -fsanitize=fuzzer). With any other engine (AFL++, honggfuzz, centipede:
# LIB_FUZZING_ENGINE is a library) CMake builds only the harness library
# (NP_FUZZ_ENGINE=none) and this script links fuzz/driver_libfuzzer.c against
# it and $LIB_FUZZING_ENGINE. (The engine flag cannot go into
# CMAKE_EXE_LINKER_FLAGS: CMake's compiler check would link libFuzzer's main.)
# Compile flags come only from $CFLAGS (NP_SANITIZE=none, build type None).

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TREE=
for d in "${SRC:-}/netpoll" "${SRC:-}" "$here"; do
  if [ -n "$d" ] && [ -f "$d/fuzz/harness.h" ] && [ -f "$d/CMakeLists.txt" ]; then
    TREE=$(cd "$d" && pwd)
    break
  fi
done
[ -n "$TREE" ] || { echo "build.sh: cannot find the netpoll tree (SRC=${SRC:-})" >&2; exit 1; }
: "${OUT:?OUT must be set}"
: "${CC:=clang}"
: "${CXX:=clang++}"
: "${CFLAGS:=}"
: "${CXXFLAGS:=$CFLAGS}"
: "${LIB_FUZZING_ENGINE:=-fsanitize=fuzzer}"
BUILD=${WORK:-/tmp}/netpoll-fuzz-build
TARGETS="lifecycle schedule events parser"
command -v zip >/dev/null || { echo "build.sh: zip is missing (apt-get install zip)" >&2; exit 1; }
mkdir -p "$OUT" "$BUILD"

if [ "$LIB_FUZZING_ENGINE" = "-fsanitize=fuzzer" ]; then
  engine=libfuzzer
  bins=$(for t in $TARGETS; do printf 'fuzz_%s ' "$t"; done)
else
  engine=none
  bins=netpoll_fuzz
fi
# NP_WERROR=OFF: the service's compiler may warn differently.
cmake -S "$TREE" -B "$BUILD" \
  -DCMAKE_C_COMPILER="$CC" \
  -DCMAKE_C_FLAGS="$CFLAGS" \
  -DCMAKE_BUILD_TYPE=None \
  -DNP_FUZZ_ENGINE=$engine \
  -DNP_SANITIZE=none \
  -DNP_WERROR=OFF \
  -DBUILD_TESTING=OFF
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$(nproc)" --target $bins

for t in $TARGETS; do
  if [ $engine = libfuzzer ]; then
    cp "$BUILD/fuzz/fuzz_$t" "$OUT/fuzz_$t"
  else
    # shellcheck disable=SC2086 # CFLAGS, CXXFLAGS and the engine are word lists
    "$CC" $CFLAGS -I"$TREE/fuzz" -DNP_FUZZ_TARGET=np_fuzz_$t -c "$TREE/fuzz/driver_libfuzzer.c" \
      -o "$BUILD/driver_$t.o"
    "$CXX" $CXXFLAGS "$BUILD/driver_$t.o" "$BUILD/fuzz/libnetpoll_fuzz.a" "$BUILD/sim/libnetpoll_sim.a" \
      $LIB_FUZZING_ENGINE -lpthread -o "$OUT/fuzz_$t"
  fi
  # seed corpus: the stored inputs of corpus/<target>/ (not the regressions:
  # those crash until their bug is fixed, and ctest replays them anyway)
  rm -f "$OUT/fuzz_${t}_seed_corpus.zip"
  if [ -n "$(ls -A "$TREE/corpus/$t" 2>/dev/null)" ]; then
    (cd "$TREE/corpus/$t" && zip -q -r "$OUT/fuzz_${t}_seed_corpus.zip" .)
  fi
  if [ -f "$TREE/fuzz/dict/$t.dict" ]; then
    cp "$TREE/fuzz/dict/$t.dict" "$OUT/fuzz_$t.dict"
  fi
done
echo "build.sh: built $(for t in $TARGETS; do printf 'fuzz_%s ' "$t"; done)in $OUT"
