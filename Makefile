# Thin wrapper over CMake: the one way to build is CMake, this only saves
# typing. Variables: BUILD (build dir), CC, SANITIZE=none|address|thread,
# JOBS, PREFIX (install).
BUILD ?= build
SANITIZE ?= none
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
CMAKE_FLAGS ?=

.PHONY: all configure test install format check-format clean

all: configure
	cmake --build $(BUILD) -j $(JOBS)

configure:
	cmake -S . -B $(BUILD) -DNP_SANITIZE=$(SANITIZE) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

test: all
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

install: all
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

# Mutation testing of the simulator: every tests/mutants/*.patch must be caught
# by a bounded npsim campaign (ci/mutants.sh; MUTANT_SEEDS, MUTANTS=glob, JOBS).
.PHONY: mutants
mutants:
	JOBS=$(JOBS) ci/mutants.sh

# ---- fuzzing (ci/fuzz.sh, ci/replay.sh, ci/fuzz-canary.sh; fuzz/README.md) ----
# make fuzz [ENGINE=libfuzzer|afl] [FUZZ_SECONDS=240] [JOBS=n] [TARGETS="lifecycle ..."]
#           [FUZZ_SANITIZE=address|none]
# make replay FILE=corpus/regressions/<target>/<name> [TARGET=...] | SEED=N | SCENARIO=path.scn
.PHONY: fuzz fuzz-afl fuzz-smoke fuzz-canary replay
FUZZ_ENV = ENGINE='$(ENGINE)' FUZZ_SECONDS='$(FUZZ_SECONDS)' JOBS='$(JOBS)' TARGETS='$(TARGETS)' \
           FUZZ_SANITIZE='$(FUZZ_SANITIZE)'
fuzz:
	$(FUZZ_ENV) ci/fuzz.sh

fuzz-afl:
	$(FUZZ_ENV) ENGINE=afl ci/fuzz.sh

fuzz-smoke:
	$(FUZZ_ENV) ci/fuzz.sh --smoke

fuzz-canary:
	JOBS='$(JOBS)' ci/fuzz-canary.sh

replay:
	@FILE='$(FILE)' TARGET='$(TARGET)' SEED='$(SEED)' SCENARIO='$(SCENARIO)' ci/replay.sh
