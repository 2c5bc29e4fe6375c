# Makefile - a thin wrapper: Debian dependencies, build, install, demo, tests, benchmarks.
# The real build is CMake (CMakeLists.txt); tests run through ctest.

# Every Debian package the build, the demo and the tests use.
PKGS := gcc make cmake pkg-config lua5.4 liblua5.4-dev lua-cjson lua-busted \
	libsqlite3-dev libuv1-dev libedit-dev libcurl4-openssl-dev libyajl-dev libpcre2-dev \
	jq json-schema-test-suite sqlite3 procps python3 clang-format man-db groff-base

BUILD ?= build
ASAN ?= build-asan
PREFIX ?= /usr/local
DESTDIR ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build build-asan install demo test test-fast bench format format-check clean

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

# Every test, in the normal build and then under the sanitizers.
test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j2
	cd $(ASAN) && ctest --output-on-failure -j2

# The normal build only, without the slow tests.
test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j2 -LE slow

# Every benchmark, each printing its table; a failing one does not hide the others.
bench: build
	@rc=0; \
	$(BUILD)/bench_store || rc=1; \
	$(BUILD)/bench_runtime || rc=1; \
	$(BUILD)/bench_live || rc=1; \
	exit $$rc

# The C sources in the repository's one format (.clang-format).
FORMAT_SRC = $(wildcard engine/*.c engine/*.h tests/*.c tests/*.h bench/*.c bench/*.h)

format: deps
	clang-format -i $(FORMAT_SRC)

# Fails, naming each file and line, when a C source is not in that format.
format-check: deps
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf $(BUILD) $(ASAN)
