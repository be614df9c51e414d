# iommu.host entry points. Each target sets up what it needs on a fresh Debian machine.
SHELL := /bin/bash
REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV ?= $(REPO)/.venv
PY := $(VENV)/bin/python
COLLECTIONS := $(REPO)/build/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(REPO)/tests/ansible.cfg
export VENV
PYTEST := $(PY) -m pytest
SANITY_ROOT := $(REPO)/build/sanity/ansible_collections/iommu/host
# The collection as published (tracked + new files, docs rendered for the docsite): lint,
# docsite and artifact are built from this copy, so no tool writes caches into the checkout.
STAGE_ROOT := $(REPO)/build/stage
STAGE := $(STAGE_ROOT)/ansible_collections/iommu/host
DIST := $(REPO)/build/dist
VERSION := $(shell sed -n 's/^version: *//p' $(REPO)/galaxy.yml)
# Each lint step prints its wall time.
TIMED = /usr/bin/env TIMEFORMAT='[time] %R s' bash -c 'time "$$@"' timed

.PHONY: help venv collection demo facts test test-setup test-checks test-unit test-browser test-sanity test-lint test-package test-compat stage dist changelog test-bed test-bed-all kernel root disk kernel-arm64 root-arm64 testbed-deps fixtures bench clean

help:
	@echo "make demo        preflight gate against localhost (sets everything up)"
	@echo "make test        everything: unit, sanity, real-kernel test bed"
	@echo "make test-unit   unit and property tests"
	@echo "make test-browser the fleet report in headless Chromium (Playwright)"
	@echo "make test-sanity ansible-test sanity"
	@echo "make test-lint   ansible-lint production, antsibull-docs lint, changelog lint, docsite build"
	@echo "make test-package build the artifact, install it in a playbook project, run the gate from it"
	@echo "make test-compat unit suite and sanity on the oldest supported ansible-core (.venv-2.16)"
	@echo "make dist        build/dist/iommu-host-<version>.tar.gz"
	@echo "make changelog   release galaxy.yml's version in the changelog (folds in new fragments)"
	@echo "make test-bed    real-kernel QEMU test bed suite (builds or reuses the kernel)"
	@echo "make test-bed-all the test bed with the systemd-boot and arm64 guests too"
	@echo "make kernel      build (or find cached) the test-bed kernel"
	@echo "make root        build (or find cached) the test-bed guests' Debian root (QEMU oracles)"
	@echo "make kernel-arm64 / root-arm64  the arm64 guest's cross-built kernel / arm64 root + qemu-system-aarch64 (cached)"
	@echo "make disk        build (or find cached) the disk images of the GRUB / systemd-boot guests"
	@echo "make fixtures    recapture tests/fixtures/sysfs from test-bed guests"
	@echo "make bench       benchmarks (not part of make test)"

venv:
	@$(REPO)/scripts/setup-debian.sh venv

# The repository root is the collection root; expose it as ansible_collections/iommu/host.
collection:
	@mkdir -p $(COLLECTIONS)/ansible_collections/iommu
	@ln -sfn $(REPO) $(COLLECTIONS)/ansible_collections/iommu/host

demo: venv collection
	$(VENV)/bin/ansible-playbook -i localhost, -c local playbooks/demo.yml

facts: venv collection
	$(VENV)/bin/ansible-playbook -i localhost, -c local -e ansible_python_interpreter=$(PY) playbooks/facts.yml

# Everything, in two phases: the checks that need no guest two at a time (2 cores; make -j2, each target's
# output printed when it ends), then the test bed (two pytest-xdist workers). Every Debian package is
# installed first, in one apt run, so the parallel targets never contend for the dpkg lock.
test: test-setup
	@echo "== unit, browser, lint, package, compat (ansible-core 2.16) and sanity, two at a time (make -j2 -Otarget):"
	@echo "   each target's output appears when it ends"
	@$(MAKE) --no-print-directory -j2 -Otarget test-checks
	@$(MAKE) --no-print-directory test-bed

test-setup: venv collection
	@$(REPO)/scripts/setup-debian.sh all

# the longest first, so the two slots end together
test-checks: test-sanity test-compat test-unit test-browser test-lint test-package

test-unit: venv collection
	$(PYTEST) tests/unit -q -p no:cacheprovider

# The fleet report in headless Chromium (Debian's chromium package, driven by Playwright).
test-browser: venv collection
	@$(REPO)/scripts/setup-debian.sh browser
	$(PYTEST) tests/browser -m browser -q -p no:cacheprovider

test-sanity: venv
	@$(REPO)/scripts/setup-debian.sh sanity
	@rm -rf $(REPO)/build/sanity && mkdir -p $(SANITY_ROOT)
	@cd $(REPO) && git ls-files -z --cached --others --exclude-standard \
	  | tar --null --ignore-failed-read -cf - -T - 2>/dev/null | tar -xf - -C $(SANITY_ROOT)
	@# ansible-test lists files through git; give the copy its own repository (build/ is ignored here)
	@cd $(SANITY_ROOT) && git init -q && git add -A
	@pipv=$$($(PY) -c 'from ansible_test._internal.python_requirements import get_venv_packages; from ansible_test._internal.host_configs import NativePythonConfig; print(get_venv_packages(NativePythonConfig(version="3.11"))["pip"])' 2>/dev/null || echo 24.2); \
	  mkdir -p ~/.ansible/test/cache && cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/get_pip_$${pipv//./_}.py
	cd $(SANITY_ROOT) && PATH=$(VENV)/bin:$$PATH $(VENV)/bin/ansible-test sanity \
	  --python $$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
	  --requirements --color no

stage: venv
	@$(REPO)/scripts/stage-collection.sh $(STAGE)

test-lint: stage
	@echo "== ansible-lint --profile production"
	@cd $(STAGE) && PATH=$(VENV)/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$(STAGE_ROOT) $(TIMED) $(VENV)/bin/ansible-lint --profile production --offline --nocolor -q
	@echo "== antsibull-docs lint-collection-docs --plugin-docs"
	@cd $(STAGE) && PATH=$(VENV)/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$(STAGE_ROOT) $(TIMED) $(VENV)/bin/antsibull-docs lint-collection-docs --plugin-docs .
	@echo "== antsibull-changelog lint"
	@cd $(STAGE) && $(TIMED) $(VENV)/bin/antsibull-changelog lint
	@unreleased=$$(cd $(REPO)/changelogs/fragments && ls *.yml *.yaml 2>/dev/null || true); \
	  [ -z "$$unreleased" ] || echo "note: fragments not yet in CHANGELOG.md ($$(echo $$unreleased)): run 'make changelog' before committing a release"
	@echo "== docsite (antsibull-docs + Sphinx, warnings are errors)"
	@$(TIMED) $(REPO)/scripts/build-docsite.sh $(STAGE_ROOT) $(REPO)/build/docsite

dist: stage
	@mkdir -p $(DIST) && rm -f $(DIST)/iommu-host-*.tar.gz
	$(VENV)/bin/ansible-galaxy collection build $(STAGE) --output-path $(DIST)

test-package: venv
	$(PYTEST) tests/packaging -q -p no:cacheprovider

test-compat: venv
	@$(REPO)/scripts/test-compat.sh all

# Release galaxy.yml's version in changelogs/changelog.yaml, CHANGELOG.md and CHANGELOG.rst.
# Run again after fragments were added: it folds them into the same release and removes them.
changelog: venv collection
	cd $(REPO) && PATH=$(VENV)/bin:$$PATH $(VENV)/bin/antsibull-changelog release --version $(VERSION) --reload-plugins

kernel: venv
	@$(REPO)/tests/testbed/build-kernel.sh

# The guests' own Debian trixie root with the two oracle QEMUs (cached; prints its path).
root: testbed-deps
	@$(REPO)/tests/testbed/build-root.sh

testbed-deps:
	@$(REPO)/scripts/setup-debian.sh testbed

# The arm64 guest (profile arm64-smmuv3): cross-built kernel, arm64 root and the outer qemu-system-aarch64 11.1
# (cached; print their paths). `make test-bed` builds them on demand (the arm64 tests ask for the guest).
kernel-arm64: venv
	@$(REPO)/tests/testbed/build-kernel-arm64.sh

root-arm64: testbed-deps
	@$(REPO)/tests/testbed/build-root-arm64.sh

# The disk-booted guests' images (GRUB, systemd-boot) for the test-bed kernel (cached; prints the directory).
disk: testbed-deps
	@$(REPO)/tests/testbed/build-disk.sh

# The real-kernel test bed: every guest (x86 9p-root guests with the oracle QEMUs, SR-IOV, the provision
# role's reboot path through GRUB and early binding on it, the arm64 SMMUv3 guest). Everything the guests
# boot is built here first, or found in the cache by its inputs (each script prints progress), and handed to
# pytest by path, so pytest-xdist's workers never race to a build script. TESTBED_WORKERS guests' worth of
# work runs at once (--dist loadfile: a test file stays on one worker, with its own guests).
# `make test-bed-all` adds the systemd-boot guest (BOOTLOADER_PROFILES); each marker also runs alone:
# pytest tests -m bootloader / sriov / arm64 / oracle.
BOOTLOADER_PROFILES ?= disk-grub
TESTBED_SELECT ?= testbed
TESTBED_WORKERS ?= 2
test-bed: venv testbed-deps collection
	@set -euo pipefail; \
	  k=$$($(REPO)/tests/testbed/build-kernel.sh | tail -n 1); \
	  r=$$($(REPO)/tests/testbed/build-root.sh | tail -n 1); \
	  d=$$($(REPO)/tests/testbed/build-disk.sh --kernel "$$k" | tail -n 1); \
	  ka=$$($(REPO)/tests/testbed/build-kernel-arm64.sh | tail -n 1); \
	  ra=$$($(REPO)/tests/testbed/build-root-arm64.sh | tail -n 1); \
	  echo "[test-bed] kernel $$k, root $$r, disks $$d, arm64 kernel $$ka, arm64 root $$ra"; \
	  export TESTBED_KERNEL=$$k TESTBED_ROOT=$$r TESTBED_DISK_DIR=$$d TESTBED_KERNEL_ARM64=$$ka TESTBED_ROOT_ARM64=$$ra; \
	  set -x; IOMMU_HOST_BOOTLOADER_PROFILES=$(BOOTLOADER_PROFILES) $(PYTEST) tests/integration -m "$(TESTBED_SELECT)" \
	    -n $(TESTBED_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 -p no:cacheprovider

test-bed-all:
	$(MAKE) test-bed BOOTLOADER_PROFILES=disk-grub,disk-sdboot

fixtures: testbed-deps collection root
	$(PY) tests/testbed/capture_fixtures.py

bench: venv collection
	$(PY) tests/benchmarks/bench_facts.py
	$(PY) tests/benchmarks/bench_report.py

clean:
	rm -rf build .pytest_cache tests/output .ansible
