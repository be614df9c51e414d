# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.nfd_features: capabilities as a Node Feature Discovery local feature file."""

import re

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings, strategies as st

from ansible_collections.iommu.host.plugins.filter.nfd_features import FilterModule, nfd_features
from tests.support import fleet

# Kubernetes: a label name is [prefix/]name, name 63 characters at most; a value likewise
NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LINE = re.compile(r"^(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?%s=(%s)?$" % (NAME, NAME))


def lines(text):
    return [x for x in text.splitlines() if not x.startswith("#")]


def test_registered():
    assert FilterModule().filters() == {"nfd_features": nfd_features}


@pytest.mark.parametrize("profile", fleet.PROFILES)
def test_every_line_is_a_valid_label(profile):
    facts = fleet.facts(profile)
    text = nfd_features({"iommu": facts})          # ansible_facts
    assert text == nfd_features(facts) == nfd_features(facts["capabilities"])
    assert text.startswith("# ") and text.endswith("\n")
    for line in lines(text):
        assert LINE.match(line), line


def test_values():
    got = dict(x.split("=", 1) for x in lines(nfd_features(fleet.host_facts("intel-sm-vfio", "dirty_tracking"))))
    assert got["iommu-vendor"] == "intel_vtd" and got["iommu-max_iova_bits"] == "48"
    assert got["iommu-dirty_tracking"] == "true" and got["iommu-dirty_tracking_device_count"] == "1"
    assert got["iommu-interrupt_remapping"] == "true" and "iommu-dirty_tracking_devices" not in got
    none = dict(x.split("=", 1) for x in lines(nfd_features(fleet.facts("none"))))
    assert "iommu-max_iova_bits" not in none and none["iommu-vendor"] == "none"     # unknown: left out


def test_namespace():
    text = nfd_features(fleet.facts("amd-vfio"), namespace="iommu.feature.node.kubernetes.io", name_prefix="")
    assert "iommu.feature.node.kubernetes.io/vendor=amd" in lines(text)
    with pytest.raises(AnsibleFilterError, match="DNS subdomain"):
        nfd_features(fleet.facts("amd-vfio"), namespace="Bad/NS")


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["vendor", "kernel_release", "max_iova_bits", "nesting", "x"]),
                       st.none() | st.booleans() | st.integers() | st.text(max_size=80) | st.lists(st.text()),
                       max_size=5))
def test_odd_capabilities_stay_valid(caps):
    caps["iommufd_usable"] = True
    for line in lines(nfd_features(caps)):
        assert LINE.match(line), line
