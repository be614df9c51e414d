# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible_facts.iommu.capabilities: the flat summary for grouping hosts, from the captured trees."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.iommu.host.plugins.module_utils.fleet import capabilities as caps_module
from ansible_collections.iommu.host.plugins.module_utils.fleet.capabilities import capabilities, with_capabilities
from tests.support import fleet

EXPECTED = {
    # profile: vendor, max_iova_bits, interrupt_remapping, scalable_mode, vfio_devices, dirty_tracking, pasid_bits
    "intel": ("intel_vtd", 39, True, False, 0, None, 0),
    "intel-vfio": ("intel_vtd", 39, True, False, 1, False, 0),
    "intel-sm": ("intel_vtd", 48, True, True, 0, None, 0),
    "intel-sm-vfio": ("intel_vtd", 48, True, True, 1, False, 0),
    "amd": ("amd", 64, False, None, 0, None, 1),
    "amd-vfio": ("amd", 64, False, None, 1, False, 1),
    "none": ("none", None, False, None, 0, None, None),
}


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_capabilities_of_the_captured_trees(profile):
    facts = fleet.facts(profile)
    caps = facts["capabilities"]            # iommu_facts.gather adds them
    assert caps == capabilities(facts)
    vendor, iova, ir, sm, vfio, dirty, pasid = EXPECTED[profile]
    assert caps["vendor"] == vendor
    assert caps["max_iova_bits"] == iova and caps["min_iova_bits"] == iova
    assert caps["interrupt_remapping"] is ir
    assert caps["scalable_mode"] is sm
    assert caps["vfio_devices"] == vfio
    assert caps["dirty_tracking"] is dirty and caps["dirty_tracking_devices"] == []
    assert caps["pasid_bits"] == pasid
    assert caps["present"] is (profile != "none")
    assert caps["iommufd_usable"] is True and caps["kernel_release"] == "7.3.4"
    assert caps["vfio_cdev"] is facts["kernel"]["vfio_device_cdev"]["available"]


def test_flat_values_only():
    for profile in EXPECTED:
        for key, value in fleet.facts(profile)["capabilities"].items():
            assert value is None or isinstance(value, (bool, int, str)) or (
                key == "dirty_tracking_devices" and all(isinstance(a, str) for a in value)), (key, value)


def test_dirty_tracking_reported_by_the_kernel():
    caps = capabilities(fleet.host_facts("intel-sm-vfio", "dirty_tracking"))
    assert caps["dirty_tracking"] is True and caps["dirty_tracking_devices"] == [fleet.VFIO]
    assert caps["pasid_bits"] == 20          # the device's max_pasid_log2 wins over the unit's registers


def test_dirty_tracking_intel_needs_scalable_mode():
    facts = fleet.facts("intel-sm-vfio")
    derived = facts["units"]["dmar0"]["decoded"]["derived"]
    derived["dirty_tracking"]["supported"] = True
    assert capabilities(facts)["dirty_tracking"] is True
    facts["cmdline"]["effects"]["scalable_mode"] = False       # intel_iommu=sm_off
    assert capabilities(facts)["dirty_tracking"] is False
    assert capabilities(facts)["scalable_mode"] is False


def test_other_switches():
    caps = capabilities(fleet.host_facts("intel-sm-vfio", "no_interrupt_remapping"))
    assert caps["interrupt_remapping"] is False
    assert capabilities(fleet.host_facts("intel-sm-vfio", "no_iommufd"))["iommufd_usable"] is False
    facts = fleet.facts("intel-sm-vfio")
    facts["vendors"] = ["intel_vtd", "amd"]
    assert capabilities(facts)["vendor"] == "mixed"


def test_with_capabilities():
    assert with_capabilities(None) is None
    assert with_capabilities({})["capabilities"]["vendor"] == "none"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=20)
KEYS = ("kernel", "units", "devices", "summary", "vendors", "cmdline", "mdevs", "present")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(EXPECTED)), st.lists(st.tuples(st.sampled_from(KEYS), JSON), max_size=4), JSON)
def test_never_raises(profile, replacements, anything):
    facts = fleet.facts(profile)
    for key, value in replacements:
        facts[key] = value
    for data in (facts, anything):
        caps = caps_module._capabilities(data if isinstance(data, dict) else {})  # not the guarded wrapper
        assert caps == capabilities(data) or not isinstance(data, dict)
        assert set(caps) == set(EXPECTED_KEYS)
        json.dumps(caps)


EXPECTED_KEYS = capabilities(fleet.facts("intel")).keys()
