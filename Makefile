# dtrain: the two commands that matter are `make run` and `make test`.
# Both install missing Debian packages (scripts/install-deps), then build with CMake.
#
#   make run                   build and run the main job
#   make test                  build and run the whole suite (ctest, time limit on every test)
#   make test SAN=address      ... under ASan (also undefined, thread, or address,undefined)
#   make test LABEL=unit       ... only tests with that ctest label (unit, multi, integration)
#   make install PREFIX=/opt/dtrain
#   make build | deps | clean
SAN      ?=
LABEL    ?=
WERROR   ?= OFF
PREFIX   ?= /usr/local
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
TEST_JOBS ?= $(JOBS)
BUILD_TYPE ?= RelWithDebInfo
ifeq ($(SAN),)
BUILD    ?= build
else
BUILD    ?= build-$(subst $(comma),-,$(SAN))
endif
comma := ,

.PHONY: all deps build configure run test install clean

all: build

deps:
	@scripts/install-deps build

configure:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DDTRAIN_SANITIZE=$(SAN) -DDTRAIN_WERROR=$(WERROR) > $(BUILD).configure.log 2>&1 || { cat $(BUILD).configure.log; exit 1; }

build: deps configure
	@cmake --build $(BUILD) -j $(JOBS)

run:
	@scripts/install-deps run
	@$(MAKE) --no-print-directory build
	@scripts/main-job $(BUILD)

test:
	@scripts/install-deps test
	@$(MAKE) --no-print-directory build
	@cd $(BUILD) && ctest --output-on-failure --timeout 900 -j $(TEST_JOBS) $(if $(LABEL),-L $(LABEL))

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build build-* build*.configure.log
