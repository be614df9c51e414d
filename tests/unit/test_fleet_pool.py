# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet.migration_pool (iommu.host.migration_pool) over facts of the captured test-bed trees."""

import json

from hypothesis import given, settings, strategies as st

from ansible_collections.iommu.host.plugins.filter.check import check
from ansible_collections.iommu.host.plugins.filter.migration_pool import FilterModule, migration_pool as pool_filter
from ansible_collections.iommu.host.plugins.module_utils.fleet import api
from tests.support import fleet
from tests.unit.test_fleet_placement import HOST_JSON, PATHS, _mutate, domain


def pool_hosts(*profiles):
    return dict(("%s-%d" % (p, i), {"ansible_facts": {"iommu": fleet.host_facts(*p.split("+"))}})
                for i, p in enumerate(profiles))


def test_filter_is_registered():
    assert FilterModule().filters() == {"migration_pool": pool_filter}


def test_intel_aw_bits_limited_by_the_legacy_host():
    res = api.migration_pool(pool_hosts("intel-vfio", "intel-sm-vfio"), models=["intel-iommu"])
    assert res["members"] == ["intel-vfio-0", "intel-sm-vfio-1"] and res["excluded"] == []
    assert set(res["models"]) == {"host", "intel-iommu"}
    aw = res["models"]["intel-iommu"]["properties"]["aw_bits"]
    assert aw["value"] == 39 and aw["per_host"] == {"intel-vfio-0": 39, "intel-sm-vfio-1": 48}
    (limit,) = aw["limited_by"]
    assert limit["host"] == "intel-vfio-0" and limit["id"] == "viommu.intel.aw_bits" and limit["status"] == "fail"
    assert "aw-bits 48 > host aw-bits 39" in limit["message"]
    fsts = res["models"]["intel-iommu"]["properties"]["fsts"]
    assert fsts["value"] is False and {x["host"] for x in fsts["limited_by"]} == {"intel-vfio-0", "intel-sm-vfio-1"}
    params = res["models"]["intel-iommu"]["params"]
    assert params["aw_bits"] == 39 and params["caching_mode"] is True and "fsts" not in params
    assert "pasid_bits" not in params


def test_one_scalable_host_gets_48_bits():
    res = api.migration_pool(pool_hosts("intel-sm-vfio"), models="intel-iommu")
    aw = res["models"]["intel-iommu"]["properties"]["aw_bits"]
    assert aw["value"] == 48 and aw["limited_by"] == []


def test_pool_params_pass_on_every_member():
    """The pool's configuration is accepted by the gate on each member: no check of it fails."""
    hv = pool_hosts("intel-vfio", "intel-sm-vfio", "intel-sm-vfio+dirty_tracking")
    res = api.migration_pool(hv, models=["intel-iommu"])
    params = res["models"]["intel-iommu"]["params"]
    ids = {"viommu.intel.aw_bits", "viommu.intel.x_flts", "viommu.intel.nesting", "viommu.intel.pasid"}
    for host in res["members"]:
        result = check(hv[host]["ansible_facts"], profiles=["intel_viommu"], params=params)
        assert not [f for f in result["findings"] if f["id"] in ids and f["status"] == "fail"], host


def test_interrupt_remapping_and_unconfirmed_dirty_tracking():
    res = api.migration_pool(pool_hosts("intel-sm-vfio+dirty_tracking", "amd-vfio"), models=[])
    host = res["models"]["host"]["properties"]
    ir = host["interrupt_remapping"]
    assert ir["value"] is False and [x["host"] for x in ir["limited_by"]] == ["amd-vfio-1"]
    assert ir["limited_by"][0]["id"] == "host.interrupt_remapping"
    dirty = host["dirty_tracking"]
    assert dirty["per_host"] == {"intel-sm-vfio+dirty_tracking-0": True, "amd-vfio-1": False}
    # sysfs-only facts cannot confirm it: a warning, so the pool does not count on it, though nothing refuses it
    assert dirty["value"] is False and dirty["possible"] is True
    assert dirty["limited_by"][0]["status"] == "warn"
    assert "Gather the facts without sysfs_only" in dirty["limited_by"][0]["remedy"]


def test_excluded_hosts():
    hv = pool_hosts("intel-sm-vfio", "intel")
    hv["gone"] = {}
    res = api.migration_pool(hv, hosts=["intel-sm-vfio-0", "intel-1", "gone", "unknown"], models=["nope"])
    assert res["members"] == ["intel-sm-vfio-0"] and res["unknown_models"] == ["nope"]
    reasons = dict((x["host"], x["reason"]) for x in res["excluded"])
    assert set(reasons) == {"intel-1", "gone", "unknown"}
    assert "no device bound to a VFIO driver" in reasons["intel-1"] and "no iommu facts" in reasons["gone"]


def test_every_model_and_an_empty_pool():
    res = api.migration_pool(pool_hosts("intel-sm-vfio", "amd-vfio"))
    assert set(res["models"]) == {"host", "intel-iommu", "arm-smmuv3", "amd-iommu", "virtio-iommu"}
    assert res["models"]["arm-smmuv3"]["properties"]["accel"]["value"] is False   # x86 hosts
    assert res["models"]["arm-smmuv3"]["params"] is None
    assert isinstance(res["models"]["virtio-iommu"]["properties"]["granule"]["value"], list)
    empty = api.migration_pool({})
    assert empty["members"] == [] and empty["models"]["intel-iommu"]["params"] is None
    assert empty["models"]["intel-iommu"]["properties"]["aw_bits"]["value"] is None
    json.dumps(res)


def test_vms_exceeding_the_pool():
    hv = pool_hosts("intel-vfio", "intel-sm-vfio")
    vms = [domain("narrow", aw=39), domain("wide", aw=48), "<bad"]
    res = api.migration_pool(hv, models=["intel-iommu"], vms=vms)
    by = dict((v["name"], v) for v in res["vms"])
    assert by["narrow"]["status"] == "within" and by["narrow"]["refused_by"] == []
    assert by["wide"]["status"] == "exceeds"
    (refusal,) = by["wide"]["refused_by"]
    assert refusal["host"] == "intel-vfio-0" and refusal["id"] == "viommu.intel.aw_bits"
    assert by["vm3"]["status"] == "error" and by["vm3"]["error"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), HOST_JSON), max_size=3), HOST_JSON,
       st.one_of(st.none(), st.lists(st.sampled_from(list(api.MODELS) + ["x"]), max_size=2)))
def test_pool_never_raises(mutations, odd_host, models):
    facts = fleet.facts("intel-sm-vfio")
    for path, value in mutations:
        _mutate(facts, path, value)
    res = api.migration_pool({"mutated": {"ansible_facts": {"iommu": facts}}, "odd": odd_host,
                              "good": {"iommu": fleet.facts("intel-vfio")}}, models=models, vms=[domain("v")])
    assert set(res["members"]) | set(x["host"] for x in res["excluded"]) == {"mutated", "odd", "good"}
    json.dumps(res)
