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
# make fuzz-merge [ENGINE=...] [TARGETS=...]   fold the working corpora (<build>/corpus/<target>,
#           kept outside the source tree by make fuzz) into the tracked corpus/<target>, minimized
# make replay FILE=corpus/regressions/<target>/<name> [TARGET=...] | SEED=N | SCENARIO=path.scn
.PHONY: fuzz fuzz-afl fuzz-smoke fuzz-merge fuzz-canary replay
FUZZ_ENV = ENGINE='$(ENGINE)' FUZZ_SECONDS='$(FUZZ_SECONDS)' JOBS='$(JOBS)' TARGETS='$(TARGETS)' \
           FUZZ_SANITIZE='$(FUZZ_SANITIZE)'
fuzz:
	$(FUZZ_ENV) ci/fuzz.sh

fuzz-afl:
	$(FUZZ_ENV) ENGINE=afl ci/fuzz.sh

fuzz-smoke:
	$(FUZZ_ENV) ci/fuzz.sh --smoke

fuzz-merge:
	$(FUZZ_ENV) ci/fuzz.sh --merge

fuzz-canary:
	JOBS='$(JOBS)' ci/fuzz-canary.sh

replay:
	@FILE='$(FILE)' TARGET='$(TARGET)' SEED='$(SEED)' SCENARIO='$(SCENARIO)' ci/replay.sh

# ---- benchmarks (bench/run.sh; never part of `make test`; ~5-8 min) ----
# make bench [BENCH_SECONDS=1.5] [BENCH_WARMUP=0.5] [BENCH_REPEAT=5] [BENCH_CONNS="1 100 1000"]
#            [BENCH_SERVERS="epoll netpoll go libuv"] [BENCH_WAIT_IDLE=s]
#            [BENCH_BUILD=build-bench]
BENCH_ENV = $(foreach v,BENCH_SECONDS BENCH_WARMUP BENCH_REPEAT BENCH_CONNS BENCH_MODES BENCH_SERVERS \
              BENCH_WAIT_IDLE BENCH_PERF BENCH_MICRO BENCH_BUILD BENCH_CMAKE_FLAGS,$(if $($(v)),$(v)='$($(v))'))
.PHONY: bench
bench:
	$(BENCH_ENV) bench/run.sh

# make footprint: instructions / D1 misses per round trip, counted (callgrind), not timed
.PHONY: footprint
footprint:
	$(BENCH_ENV) bench/footprint.sh

# ---- soak (tests/stress/np_stress --soak; never part of `make test` or CI) ----
# Threads doing read/write/deadlines/close/reopen on thousands of fds for
# SOAK_SECONDS, progress every 10 s, one summary line; non-zero exit on any
# lost byte, hang, lost wake-up, leaked waiter or fd.
# make soak [SOAK_SECONDS=600] [SOAK_ARGS="--threads 32 --fds 2048 --seed N"]
#           [SOAK_SANITIZE=none|address|thread] [SOAK_BUILD=build-soak-<sanitize>]
#           [SOAK_RUNNER="setarch x86_64 -R"]   (TSan on kernels with mmap_rnd_bits > 28)
SOAK_SECONDS ?= 600
SOAK_SANITIZE ?= none
SOAK_BUILD ?= build-soak-$(SOAK_SANITIZE)
.PHONY: soak
soak:
	cmake -S . -B $(SOAK_BUILD) -DNP_SANITIZE=$(SOAK_SANITIZE) -DBUILD_TESTING=ON $(CMAKE_FLAGS)
	cmake --build $(SOAK_BUILD) -j $(JOBS) --target np_stress
	$(SOAK_RUNNER) $(SOAK_BUILD)/tests/stress/np_stress --soak --seconds $(SOAK_SECONDS) $(SOAK_ARGS)
