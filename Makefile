# Everything a newcomer needs on a fresh Debian 12 machine, as root:
#   make demo   set up, then registry → imagetool pull → unpack → pyrun run
#   make test   set up, then the whole test suite
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python

# System packages: build deps of the shim and python-prctl, the test rootfs,
# a real registry, the peers (oracles in tests and bench), a real caller, the
# official OCI schemas the tests cross-check ours against, debootstrap for the
# bench's Debian image, qemu for the tests' cgroup v2 guest (its kernel is
# downloaded, not installed: tests/support/cgroup2vm.py), and criu for checkpoint/restore.
APT_PACKAGES := gcc make pkg-config python3-dev python3-venv libseccomp-dev libcap-dev \
	busybox-static docker-registry skopeo umoci runc crun podman conmon containerd strace uidmap \
	golang-github-opencontainers-specs-dev golang-github-opencontainers-image-spec-dev \
	debootstrap qemu-system-x86 criu

.PHONY: all setup apt venv demo test test-fast bench fuzz conformance clean

all: setup

setup: $(VENV)/.installed

$(VENV)/.apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt-get install $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/bin/python: | $(VENV)/.apt
	$(PYTHON) -m venv $(VENV)

# The shim is compiled by setuptools' cffi_modules during this install.
$(VENV)/.installed: $(VENV)/.apt $(VENV)/bin/python pyproject.toml setup.py runtime/_bin/pyrun runtime/_shim/build_shim.py runtime/_shim/exec_helper.c runtime/_shim/launcher.c runtime/_shim/nolibc.h $(wildcard runtime/_shim/src/*.py)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi
	$(PY) -m pip install -q --no-build-isolation --config-settings editable_mode=compat -e '.[test]'
	@# Byte-compile now: where PYTHONDONTWRITEBYTECODE is set, every pyrun call
	@# would otherwise recompile its modules (~10 ms each time).
	$(PY) -m compileall -q runtime specs imagetool
	@# setup.py writes pyrun's #! line: `#!<pyrun-launcher> <python> -IS`, the interpreter
	@# exec'd from a read-only mount (runtime/_shim/launcher.c). A pyrun without it
	@# would run, unsealed: refuse to call the install done.
	@head -n1 $(VENV)/bin/pyrun | grep -q '^#!/.*/pyrun-launcher /.* -IS$$' || \
		{ echo "$(VENV)/bin/pyrun: #! line is not pyrun-launcher's: $$(head -n1 $(VENV)/bin/pyrun)"; exit 1; }
	@touch $@

demo: setup
	$(PY) -m compileall -q runtime specs imagetool
	$(PY) -m tests.demo

test: setup
	$(PY) -m compileall -q runtime specs imagetool
	$(VENV)/bin/pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) -m compileall -q runtime specs imagetool
	$(PY) -m bench

# The runtime-spec conformance suite (conformance/) against pyrun, runc and crun, compared in
# docs/conformance.md. crun runs in a private mount namespace (unshare -m) without this host's
# cgroup2 mount, which it mistakes for a unified hierarchy; the host's mounts are not touched.
conformance: setup
	$(PY) -m compileall -q runtime specs conformance
	$(PY) -m conformance.compare --out docs/conformance.md --pyrun $(VENV)/bin/pyrun

# Bounded fuzzing (issue 15): config loading + validation, and layer unpacking (in a private
# mount namespace where all else is read-only), FUZZ_RUNS inputs or FUZZ_TIME seconds each.
# Non-zero on a crash, whose input is kept in the directory named. atheris is for this
# target only, never a dependency of pyrun, imagetool or the test suite.
FUZZ_RUNS ?= 20000
FUZZ_TIME ?= 60
fuzz: setup
	$(PY) -m pip install -q --only-binary=:all: 'atheris==3.0.0'
	@tmp=$$(mktemp -d /tmp/pyrun-fuzz.XXXXXX); rc=0; \
	for target in fuzz_config "fuzz_unpack --sandbox"; do \
		echo "fuzz: $$target, $(FUZZ_RUNS) runs or $(FUZZ_TIME) s"; \
		(cd $$tmp && TMPDIR=$$tmp PYTHONPATH=$(CURDIR) $(CURDIR)/$(PY) -m tests.fuzz.$$target \
			-runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_TIME) >$$tmp/log 2>&1) || \
			{ rc=1; tail -n 40 $$tmp/log; mv $$tmp/log $$tmp/log.$${target%% *}; }; \
		grep -h '^Done\|^#[0-9]* *DONE' $$tmp/log 2>/dev/null | tail -n 2; rm -f $$tmp/log; \
	done; \
	if [ $$rc = 0 ]; then rm -rf $$tmp; else echo "fuzz: a crash; its input and log are in $$tmp"; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info runtime/_shim/_native*
