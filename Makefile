# Makefile - a thin wrapper: Debian dependencies, build, install, demo, tests, benchmarks.
# The real build is CMake (CMakeLists.txt); tests run through ctest.

# Every Debian package the build, the demo and the tests use.
PKGS := gcc make cmake pkg-config lua5.4 liblua5.4-dev lua-cjson lua-busted \
	libsqlite3-dev libuv1-dev libedit-dev libcurl4-openssl-dev libyajl-dev libpcre2-dev \
	jq json-schema-test-suite sqlite3 procps python3 clang-format man-db groff-base \
	clang libclang-rt-dev libh2o-dev libssl-dev python3-prometheus-client \
	nats-server libnats-dev valgrind

BUILD ?= build
ASAN ?= build-asan
FUZZ ?= build-fuzz
# Seconds each fuzz target runs in `make fuzz`; `make test` runs each for FUZZ_SHORT.
FUZZ_SECONDS ?= 60
FUZZ_SHORT ?= 5
FUZZ_TARGETS := json jsonl schema contract deploy
PREFIX ?= /usr/local
DESTDIR ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build build-asan build-fuzz install demo cluster-demo test test-fast fuzz fuzz-short fuzz-run \
	bench format format-check clean

all: build

# Installs the packages that are missing (and nothing when all are there).
deps:
	@missing=$$(for p in $(PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSL_WERROR=ON
	cmake --build $(BUILD) -j2

# The binary, the built-in schemas and Lua modules, the example processors, the man
# page and the bash completion under $(DESTDIR)$(PREFIX) (bin/, share/sluice/,
# share/man/man1/, share/bash-completion/completions/). Builds only what it installs.
install: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSL_WERROR=ON
	cmake --build $(BUILD) -j2 --target sluice sluice_docs
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# The same code with AddressSanitizer and UndefinedBehaviorSanitizer.
build-asan: deps
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE=ON -DSL_WERROR=ON
	cmake --build $(ASAN) -j2

demo: build
	sh processors/demo.sh $(BUILD)/sluice

# The example deployment on a 3-node NATS JetStream cluster on 127.0.0.1 (streams and
# buckets with 3 replicas) with two runners; stops the cluster and the runners and
# removes their files when it ends.
cluster-demo: build
	sh processors/cluster_demo.sh $(BUILD)/sluice

# Every test, in the normal build and then under the sanitizers, then a short run of
# each fuzz target (when clang is there).
test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j2
	cd $(ASAN) && ctest --output-on-failure -j2
	@if command -v clang >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory fuzz-short; \
	else \
		echo "make test: clang is not installed: skipping the fuzz targets (make deps installs it)"; \
	fi

# The libFuzzer targets of tests/fuzz (clang, with ASan and UBSan).
build-fuzz: deps
	cmake -S . -B $(FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSL_FUZZ=ON \
		-DSL_WERROR=ON
	cmake --build $(FUZZ) -j2 --target fuzz_all

# Runs each fuzz target for FUZZ_SECONDS (60) seconds on a corpus in $(FUZZ)/corpus,
# seeded from tests/fuzz/corpus; a crash stops it, and the input that caused it is left
# in $(FUZZ)/crashes/<target>/. Add such an input to tests/fuzz/corpus/<target>/
# once it is fixed.
fuzz: build-fuzz
	@$(MAKE) --no-print-directory fuzz-run FUZZ_RUN_SECONDS=$(FUZZ_SECONDS)

# The short run of `make test`: every target for FUZZ_SHORT (5) seconds.
fuzz-short: build-fuzz
	@$(MAKE) --no-print-directory fuzz-run FUZZ_RUN_SECONDS=$(FUZZ_SHORT)

fuzz-run:
	@rc=0; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ)/corpus/$$t $(FUZZ)/crashes/$$t; \
		cp -n tests/fuzz/corpus/$$t/* $(FUZZ)/corpus/$$t/ 2>/dev/null; \
		echo "fuzz_$$t: $(FUZZ_RUN_SECONDS) s"; \
		dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
		$(FUZZ)/fuzz_$$t -max_total_time=$(FUZZ_RUN_SECONDS) -timeout=10 -rss_limit_mb=2048 $$dict \
			-print_final_stats=1 -artifact_prefix=$(FUZZ)/crashes/$$t/ \
			$(FUZZ)/corpus/$$t >$(FUZZ)/fuzz_$$t.log 2>&1 \
			|| { rc=1; echo "fuzz_$$t FAILED: see $(FUZZ)/fuzz_$$t.log"; tail -40 $(FUZZ)/fuzz_$$t.log; }; \
		grep -h '^stat::number_of_executed_units' $(FUZZ)/fuzz_$$t.log | sed "s/^/  /"; \
	done; exit $$rc

# The normal build only, without the slow tests.
test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j2 -LE slow

# Every benchmark, each printing its table; a failing one does not hide the others.
# BENCH_QUICK=1 (`make bench BENCH_QUICK=1`) shrinks bench_append's inputs (to at most
# 1 000 000 lines) and the large runs of both cost-growth rows (bench_runtime f,
# bench_append d) from 10 000 000 to 3 000 000 events; without it every row runs at the
# size issue 13 names.
bench: build
	@rc=0; \
	$(BUILD)/bench_store || rc=1; \
	$(BUILD)/bench_runtime || rc=1; \
	$(BUILD)/bench_live || rc=1; \
	$(BUILD)/bench_budgets || rc=1; \
	$(BUILD)/bench_append || rc=1; \
	$(BUILD)/bench_http || rc=1; \
	$(BUILD)/bench_nats || rc=1; \
	exit $$rc

# The C sources in the repository's one format (.clang-format).
FORMAT_SRC = $(wildcard engine/*.c engine/*.h tests/*.c tests/*.h tests/fuzz/*.c tests/fuzz/*.h \
	bench/*.c bench/*.h)

format: deps
	clang-format -i $(FORMAT_SRC)

# Fails, naming each file and line, when a C source is not in that format.
format-check: deps
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
