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

.PHONY: help venv collection demo facts test test-unit test-sanity test-bed kernel testbed-deps fixtures bench clean

help:
	@echo "make demo        preflight gate against localhost (sets everything up)"
	@echo "make test        everything: unit, sanity, real-kernel test bed"
	@echo "make test-unit   unit and property tests"
	@echo "make test-sanity ansible-test sanity"
	@echo "make test-bed    real-kernel QEMU test bed suite (builds or reuses the kernel)"
	@echo "make kernel      build (or find cached) the test-bed kernel"
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

test: test-unit test-sanity test-bed

test-unit: venv collection
	$(PYTEST) tests/unit -q -p no:cacheprovider

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

kernel: venv
	@$(REPO)/tests/testbed/build-kernel.sh

testbed-deps:
	@$(REPO)/scripts/setup-debian.sh testbed

test-bed: testbed-deps collection
	$(PYTEST) tests/integration -m testbed -p no:cacheprovider

fixtures: testbed-deps collection
	$(PY) tests/testbed/capture_fixtures.py

bench: venv collection
	$(PY) tests/benchmarks/bench_facts.py

clean:
	rm -rf build .pytest_cache tests/output
