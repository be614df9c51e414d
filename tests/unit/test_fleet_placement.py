# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet.placement (iommu.host.placement): VMs x hosts from facts of the captured test-bed trees."""

import json

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover
    Mapping = dict

from hypothesis import given, settings, strategies as st

from ansible_collections.iommu.host.plugins.filter.check import check
from ansible_collections.iommu.host.plugins.filter.placement import FilterModule, placement as placement_filter
from ansible_collections.iommu.host.plugins.module_utils.fleet import api
from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import requirements
from tests.support import fleet


def domain(name, aw=39, cm="on", slot="0x09", model="intel"):
    driver = "<driver caching_mode='%s' aw_bits='%d'/>" % (cm, aw) if model == "intel" else ""
    return ("<domain type='kvm'><name>%s</name><memory unit='GiB'>2</memory><devices>"
            "<iommu model='%s'>%s</iommu><hostdev mode='subsystem' type='pci' managed='yes'><source>"
            "<address domain='0x0000' bus='0x00' slot='%s' function='0x0'/></source></hostdev>"
            "</devices></domain>" % (name, model, driver, slot))


def hosts():
    return {"legacy": {"ansible_facts": {"iommu": fleet.facts("intel-vfio")}},       # 39-bit VT-d
            "scalable": {"ansible_facts": {"iommu": fleet.facts("intel-sm-vfio")}},  # 48-bit VT-d
            "amd": {"ansible_facts": {"iommu": fleet.facts("amd-vfio")}},            # no interrupt remapping
            "bare": {"ansible_facts": {}}}


def test_filter_is_registered():
    assert FilterModule().filters() == {"placement": placement_filter}


def test_matrix():
    res = api.placement(hosts(), [domain("small", aw=39), domain("wide", aw=48)])
    assert res["hosts"] == ["legacy", "scalable", "amd", "bare"]
    assert res["hosts_without_facts"] == ["bare"]
    m = res["matrix"]
    assert m["small"]["legacy"]["status"] == "pass" and m["small"]["scalable"]["status"] == "pass"
    assert m["small"]["legacy"]["first"] is None
    wide = m["wide"]["legacy"]
    assert wide["status"] == "fail" and wide["first"]["id"] == "viommu.intel.aw_bits"
    assert "aw-bits 48 > host aw-bits 39" in wide["first"]["message"]
    assert "aw-bits=39" in wide["first"]["remedy"] and wide["first"]["qemu_effect"] == "refuse"
    assert wide["first"]["device"] == fleet.VFIO
    assert m["wide"]["scalable"]["status"] == "pass"
    assert m["small"]["amd"]["first"]["id"] == "host.interrupt_remapping"
    assert m["small"]["bare"]["first"]["id"] == "facts.iommu"
    rows = dict((r["name"], r) for r in res["vms"])
    assert rows["small"]["pass"] == ["legacy", "scalable"] and rows["small"]["fail"] == ["amd", "bare"]
    assert rows["wide"]["pass"] == ["scalable"] and rows["wide"]["viommu"] == "intel-iommu"
    assert len(res["cells"]) == 8
    assert {"vm": "wide", "host": "legacy"}.items() <= res["cells"][4].items()
    json.dumps(res)


def test_cells_agree_with_the_check_filter():
    """Each cell is what iommu.host.check(vm=) says for that VM on that host."""
    vms = [domain("a", aw=39), domain("b", aw=48), domain("c", cm="off"), domain("d", slot="0x0a"),
           domain("e", model="virtio"), "qemu-system-x86_64 -device intel-iommu,caching-mode=on,aw-bits=39 "
                                        "-device vfio-pci,host=00:09.0"]
    hv = hosts()
    res = api.placement(hv, vms)
    for index, vm in enumerate(vms):
        name = res["vms"][index]["name"]
        for host, entry in hv.items():
            expected = check(entry["ansible_facts"], vm=vm)
            cell = res["matrix"][name][host]
            assert cell["status"] == expected["status"], (name, host)
            first = [f for f in expected["findings"] if f["status"] == expected["status"]][0] \
                if expected["status"] != "pass" else None
            if first is None:
                assert cell["first"] is None
            else:
                assert (cell["first"]["id"], cell["first"]["message"]) == (first["id"], first["message"])


def test_addresses_the_host_lacks_and_the_all_vfio_override():
    vm = requirements(domain("elsewhere", slot="0x1c"))       # 0000:00:1c.0 is on no test-bed host
    res = api.placement(hosts(), [vm], hosts=["scalable"])
    cell = res["matrix"]["elsewhere"]["scalable"]
    assert cell["status"] == "fail" and cell["first"]["id"] == "selection.devices"
    assert "0000:00:1c.0" in cell["first"]["message"]
    res = api.placement(hosts(), [vm], hosts=["scalable"], devices="all_vfio")
    assert res["matrix"]["elsewhere"]["scalable"]["status"] == "pass"


def test_params_override_each_vm():
    res = api.placement(hosts(), [domain("x", aw=48)], params={"aw_bits": 39}, hosts=["legacy"])
    assert res["matrix"]["x"]["legacy"]["status"] == "pass"


def test_unreadable_definitions_and_names():
    res = api.placement(hosts(), ["<domain>", {"profiles": "no"}, domain("same"), domain("same")],
                        hosts=["scalable"])
    names = [r["name"] for r in res["vms"]]
    assert names == ["vm1", "vm2", "same", "same#2"]
    bad = res["matrix"]["vm1"]["scalable"]
    assert bad["status"] == "fail" and bad["first"]["id"] == "vm.definition"
    assert "cannot be read" in bad["first"]["message"] and res["vms"][0]["error"]
    assert "vm_requirements" in res["matrix"]["vm2"]["scalable"]["first"]["message"]
    named = api.placement(hosts(), {"web": domain("ignored")}, hosts=["scalable"])
    assert [r["name"] for r in named["vms"]] == ["web"]


def test_unjudgeable_parts_warn():
    vm = requirements(domain("p"))
    vm["problems"] = ["an unknown vIOMMU property"]
    cell = api.placement(hosts(), [vm], hosts=["scalable"])["matrix"]["p"]["scalable"]
    assert cell["status"] == "warn" and cell["first"]["id"] == "vm.definition"
    assert "an unknown vIOMMU property" in cell["first"]["message"]


class HostVars(Mapping):
    """Like Ansible's hostvars: a Mapping (not a dict) whose entries are Mappings too."""

    def __init__(self, data):
        self._data = data

    def __getitem__(self, key):
        return Entry(self._data[key])

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


class Entry(HostVars):
    def __getitem__(self, key):
        if key == "broken":
            raise RuntimeError("undefined variable")
        return self._data[key]


def test_hostvars_mappings():
    data = dict((h, dict(e, broken=1)) for h, e in hosts().items())
    res = api.placement(HostVars(data), [domain("m")])
    assert res["matrix"]["m"]["scalable"]["status"] == "pass"
    assert res["hosts_without_facts"] == ["bare"]
    assert api.placement(HostVars(data), [domain("m")], hosts=["nowhere"])["hosts_without_facts"] == ["nowhere"]


def test_identical_facts_share_one_evaluation():
    hv = fleet.fleet(70, profiles=("intel-vfio", "intel-sm-vfio"), variants=("as_captured",))
    res = api.placement(hv, [domain("a"), domain("b", aw=48), domain("c")])   # a and c: same gate inputs
    assert res["evaluations"] == 2 * 2
    assert sorted(set(c["status"] for c in res["cells"])) == ["fail", "pass"]
    assert len(res["vms"][1]["pass"]) == 35


def test_hosts_differing_only_in_the_command_line_text_share_an_evaluation():
    hv = {}
    for i in range(5):
        facts = fleet.facts("intel-sm-vfio")
        facts["cmdline"]["raw"] += " root=UUID=%d" % i
        facts["findings"] = [{"code": "sysfs_read", "message": "host %d" % i}]
        hv["h%d" % i] = {"ansible_facts": {"iommu": facts}}
    unread = fleet.facts("intel-sm-vfio")
    unread["cmdline"]["raw"] = None
    hv["unread"] = {"iommu": unread}
    res = api.placement(hv, [domain("a")])
    assert res["evaluations"] == 2
    assert res["vms"][0]["pass"] == ["h0", "h1", "h2", "h3", "h4"]
    assert res["matrix"]["a"]["unread"]["first"]["id"] == "host.iommu_not_disabled"
    assert check(unread, vm=domain("a"))["status"] == "fail"


HOST_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                         lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                         max_leaves=25)
PATHS = [("kernel",), ("units",), ("devices",), ("summary",), ("groups",), ("cmdline",), ("devices", fleet.VFIO),
         ("units", "dmar0", "decoded"), ("devices", fleet.VFIO, "hw_info"), ("kernel", "interrupt_remapping"),
         ("summary", "vfio_devices")]


def _mutate(facts, path, value):
    node = facts
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node[path[-1]] = value
    return facts


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), HOST_JSON), max_size=3), HOST_JSON,
       st.lists(st.one_of(HOST_JSON, st.sampled_from([domain("x"), domain("y", aw=48), "qemu -device vfio-pci"])),
                min_size=1, max_size=3))
def test_placement_never_raises(mutations, odd_host, vms):
    facts = fleet.facts("intel-sm-vfio")
    for path, value in mutations:
        _mutate(facts, path, value)
    res = api.placement({"mutated": {"ansible_facts": {"iommu": facts}}, "odd": odd_host, "none": None}, vms)
    assert len(res["cells"]) == 3 * len(vms)
    for cell in res["cells"]:
        assert cell["status"] in ("pass", "warn", "fail")
        assert cell["status"] == "pass" or cell["first"]["message"]
    json.dumps(res)
