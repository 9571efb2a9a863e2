# The README's commands.  Each installs missing Debian packages first.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 600
JOBS       ?= $(shell nproc)
CMAKE_GEN  := $(shell command -v ninja >/dev/null 2>&1 && echo -G Ninja)

.PHONY: all deps build soak demo test test-asan fuzz bench docs install clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The chaos soak (docs/soak.md): everything at once while random processes
# are SIGKILLed, then its figures; fails if anything was lost, duplicated,
# torn, hung or left behind.  Not part of test.  SOAK_SECONDS=N for another
# length than 5 minutes.
SOAK_SECONDS ?= 300
soak: build
	$(BUILD)/soak/soak $(SOAK_SECONDS)

# Build and run every example; fails if one does.
demo: build
	./examples/run_demo.sh $(BUILD)/examples

# Build and run the whole suite (one process per test, leak checks), then
# one line of pass/fail counts per start method; fails if a test does.
test: build
	@rm -f $(BUILD)/ctest-junit.xml
	cd $(BUILD) && ctest --output-on-failure --timeout 300 -j $(JOBS) \
	  --output-junit $(abspath $(BUILD))/ctest-junit.xml; \
	  rc=$$?; python3 $(CURDIR)/scripts/test-summary.py $(abspath $(BUILD))/ctest-junit.xml; exit $$rc

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer (clang).
test-asan: deps
	CC=clang CXX=clang++ cmake -S . -B $(BUILD_ASAN) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug \
	  -DMP_ASAN=ON -DMP_UBSAN=ON -DMP_FUZZ=ON -DMP_BUILD_BENCH=OFF
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	@rm -f $(BUILD_ASAN)/ctest-junit.xml
	cd $(BUILD_ASAN) && MP_TEST_TIMEOUT_MULTIPLIER=3 ctest --output-on-failure --timeout 900 -j $(JOBS) \
	  --output-junit $(abspath $(BUILD_ASAN))/ctest-junit.xml; \
	  rc=$$?; python3 $(CURDIR)/scripts/test-summary.py $(abspath $(BUILD_ASAN))/ctest-junit.xml; exit $$rc

# Every libFuzzer target (tests/fuzz/) for FUZZ_SECONDS each, offline, with
# a new random seed each run (CI's short runs keep -seed=1); prints the
# executions per target, fails if one found a crash (clang, ASan+UBSan).
#   make fuzz FUZZ_SECONDS=600
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(BUILD_FUZZ) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug \
	  -DMP_ASAN=ON -DMP_UBSAN=ON -DMP_FUZZ=ON -DMP_BUILD_BENCH=OFF
	cmake --build $(BUILD_FUZZ) -j $(JOBS)
	./scripts/fuzz.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

# Also writes bench/results.json and the chart bench/results.png (matplotlib).
bench: deps
	@./scripts/install-deps.sh bench
	@# re-configure: the peers (ZeroMQ, Boost) may have just been installed
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	python3 bench/run.py --build $(BUILD) --readme README.md

# The API reference: Doxygen over the public headers and docs/ into
# $(BUILD)/docs/html.  Any Doxygen warning fails it.  Installs doxygen
# first when missing (as root).
docs:
	@./scripts/install-deps.sh docs
	@mkdir -p $(BUILD)/docs
	{ cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $(BUILD)/docs"; } | doxygen -
	@echo "API reference: $(BUILD)/docs/html/index.html"

PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
