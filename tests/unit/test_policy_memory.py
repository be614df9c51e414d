"""The memory checks (profile memory): memory.hugepages, memory.size, memory.numa_locality over facts
gathered from fake sysfs/procfs trees, through evaluate(), check(vm=) and placement."""
import copy
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.filter.check import check
from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet
from ansible_collections.iommu.host.plugins.module_utils.policy import api as P
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import memory as MC
from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import requirements
from tests.support import memory_tree, synthetic
from tests.support.ansible_env import env

GIB_KB = memory_tree.GIB_KB
GIB = 1 << 30
MIB = 1 << 20
DEV = synthetic.pci_address(0)       # on vfio-pci, host node 1
DEV2 = synthetic.pci_address(2)      # on vfio-pci, host node 0
MDEV = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
MEM_CHECKS = ("memory.hugepages", "memory.size", "memory.numa_locality")
QEMU_WORDS_11_1 = "/work/coord/qemu-11.1.3-strings.txt"


def two_node_tree(root, **kw):
    synthetic.build(root, n_devices=3, vfio=(0, 2))
    spec = dict(total_kb=64 * GIB_KB, available_kb=40 * GIB_KB,
                pools={2048: (1024, 1000, 8, 0), GIB_KB: (8, 8, 0, 0)},
                nodes={0: {"total": 32 * GIB_KB, "free": 20 * GIB_KB, "cpulist": "0-3",
                           "pools": {2048: (512, 500, 0), GIB_KB: (8, 8, 0)}},
                       1: {"total": 32 * GIB_KB, "free": 18 * GIB_KB, "cpulist": "4-7",
                           "pools": {2048: (512, 500, 0), GIB_KB: (0, 0, 0)}}},
                numa={DEV: "1", synthetic.pci_address(1): "0", DEV2: "0"})
    spec.update(kw)
    memory_tree.build(root, **spec)


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("numa"))
    two_node_tree(root)
    return iommu_facts.gather(root=root, sysfs_only=True)


@pytest.fixture
def facts(gathered):
    return copy.deepcopy(gathered)


def vm(size=4 * GIB, hugepages=(), host_nodes=None, policy=None, numa=(), **extra):
    mem = {"size": size, "hugepages": [dict(p) for p in hugepages], "host_nodes": host_nodes, "policy": policy,
           "numa": [dict(c) for c in numa], "locked": False, "hard_limit": None}
    mem.update(extra)
    return mem


def run(f, memory, devices=DEV, **params):
    params = dict(params, guest_memory=memory)
    return P.evaluate(f, ["memory"], devices, host="h1", params=params)


def find(result, check_id, device=None):
    hits = [x for x in result["findings"] if x["id"] == check_id and x["device"] == device]
    assert len(hits) == 1, (check_id, device, [(x["id"], x["device"]) for x in result["findings"]])
    return hits[0]


def one(f, check_id, memory, device=None, **kw):
    return find(run(f, memory, **kw), check_id, device)


# ---------------------------------------------------------------------------
# memory.hugepages


def test_hugepages_fit(facts):
    x = one(facts, "memory.hugepages", vm(size=1 * GIB, hugepages=[{"size": 2 * MIB, "nodeset": None}]))
    assert x["status"] == P.PASS and x["qemu_effect"] is None
    assert "512 2 MiB pages (1000 free, 8 of them reserved)" in x["message"]
    ev = x["evidence"]
    assert ev['memory.hugepages."2048kB".free'] == 1000 and ev['memory.hugepages."2048kB".reserved'] == 8
    assert ev["source"].startswith("/proc/meminfo")


def test_evidence_paths_resolve_in_the_facts(facts):
    jmespath = pytest.importorskip("jmespath")
    memories = [vm(size=1 * GIB, hugepages=[{"size": 2 * MIB}]), vm(size=64 * GIB, hugepages=[{"size": GIB}]),
                vm(size=2 * GIB, host_nodes="0", hugepages=[{"size": 2 * MIB}]), vm(size=60 * GIB, host_nodes="1"),
                vm(size=4 * GIB, host_nodes="0")]
    checked = 0
    for mem in memories:
        for x in run(facts, mem, devices=[DEV, DEV2])["findings"]:
            for key, value in x["evidence"].items():
                if key.startswith(("memory.", "devices.", "mdevs.")):
                    assert jmespath.search(key, facts) == value, (x["id"], key)
                    checked += 1
    assert checked > 20


def test_hugepages_short_fails_with_qemus_words_and_the_remedy(facts):
    x = one(facts, "memory.hugepages", vm(size=4 * GIB, hugepages=[{"size": 2 * MIB}]))
    assert x["status"] == P.FAIL and x["qemu_effect"] == "refuse"
    assert "needs 2048 2 MiB pages and the host has 992 free (1000 free, 8 reserved" in x["message"]
    assert "unable to map backing store for guest RAM: Cannot allocate memory" in x["message"]
    assert "echo 2080 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages" in x["remedy"]
    assert "hugepagesz=2M hugepages=2080" in x["remedy"]


def test_missing_page_size_fails(facts):
    del facts["memory"]["hugepages"]["1048576kB"]
    x = one(facts, "memory.hugepages", vm(size=4 * GIB, hugepages=[{"size": GIB}]))
    assert x["status"] == P.FAIL and x["qemu_effect"] == "refuse"
    assert "offers no 1 GiB hugepages (sizes it offers: 2 MiB)" in x["message"]
    assert "hugepages-1048576kB does not exist" in x["message"]
    assert "pdpe1gb" in x["remedy"] and "2 MiB" in x["remedy"]


def test_default_page_size_is_the_hosts(facts):
    x = one(facts, "memory.hugepages", vm(size=1 * GIB, hugepages=[{"size": None}]))
    assert x["status"] == P.PASS and "2 MiB pages" in x["message"]
    facts["memory"]["hugepage_size_default"] = GIB
    x = one(facts, "memory.hugepages", vm(size=1 * GIB, hugepages=[{"size": None}]))
    assert x["status"] == P.PASS and "1 1 GiB pages" in x["message"]


def test_pinned_nodes_count_only_their_pages(facts):
    # 1 GiB pages: 8 free globally, all on node 0; the VM binds its memory to node 1
    x = one(facts, "memory.hugepages", vm(size=4 * GIB, host_nodes="1", hugepages=[{"size": GIB}]))
    assert x["status"] == P.FAIL and x["qemu_effect"] == "refuse"
    assert "4 free 1 GiB pages are needed on host node(s) 1, which have 0" in x["message"]
    assert "qemu_prealloc_mem: preallocating memory failed" in x["message"]
    assert "echo 4 > /sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages" in x["remedy"]
    assert "hugepagesz=1G hugepages=1:4" in x["remedy"]
    assert x["evidence"]['memory.nodes."1".hugepages."1048576kB".free'] == 0
    # bound to node 0 it fits; 'preferred' does not confine the pages
    assert one(facts, "memory.hugepages", vm(size=4 * GIB, host_nodes="0", hugepages=[{"size": GIB}]))[
        "status"] == P.PASS
    assert one(facts, "memory.hugepages", vm(size=4 * GIB, host_nodes="1", policy="preferred",
                                             hugepages=[{"size": GIB}]))["status"] == P.PASS


def test_guest_numa_cells_per_page_size_and_node(facts):
    cells = [{"id": 0, "size": 2 * GIB, "host_nodes": "0"}, {"id": 1, "size": 512 * MIB, "host_nodes": "1"}]
    pages = [{"size": GIB, "nodeset": "0"}, {"size": 2 * MIB, "nodeset": None}]
    x = one(facts, "memory.hugepages", vm(size=2 * GIB + 512 * MIB, numa=cells, hugepages=pages))
    assert x["status"] == P.PASS, x["message"]
    assert "guest NUMA cell 0: 2 1 GiB pages on node(s) 0" in x["message"]
    assert "guest NUMA cell 1: 256 2 MiB pages on node(s) 1" in x["message"]
    # the cells' demands add up on a shared node
    cells = [{"id": 0, "size": 600 * MIB, "host_nodes": "1"}, {"id": 1, "size": 600 * MIB, "host_nodes": "1"}]
    x = one(facts, "memory.hugepages", vm(size=1200 * MIB, numa=cells, hugepages=[{"size": 2 * MIB}]))
    assert x["status"] == P.FAIL
    assert "guest NUMA cell 1, 600 free 2 MiB pages are needed on host node(s) 1, which have 500" in x["message"]


def test_surplus_pages_warn(facts):
    facts["memory"]["hugepages"]["2048kB"]["overcommit"] = 2000
    x = one(facts, "memory.hugepages", vm(size=4 * GIB, hugepages=[{"size": 2 * MIB}]))
    assert x["status"] == P.WARN and x["qemu_effect"] is None and "surplus pages" in x["message"]


def test_bound_to_a_node_the_host_lacks(facts):
    x = one(facts, "memory.hugepages", vm(size=GIB, host_nodes="3", hugepages=[{"size": 2 * MIB}]))
    assert x["status"] == P.FAIL and "cannot bind memory to host NUMA nodes: Invalid argument" in x["message"]
    x = one(facts, "memory.size", vm(size=GIB, host_nodes="0,3"))
    assert x["status"] == P.FAIL and x["qemu_effect"] == "refuse" and "has no node 3 (nodes: 0-1)" in x["message"]


def test_no_hugepages_and_no_memory_are_not_applicable(facts):
    assert one(facts, "memory.hugepages", vm())["status"] == P.NA
    r = P.evaluate(facts, ["memory"], DEV, host="h1")
    for cid in MEM_CHECKS:
        x = find(r, cid, DEV if cid == "memory.numa_locality" else None)
        assert x["status"] == P.NA and "No VM memory given" in x["message"]


# ---------------------------------------------------------------------------
# memory.size


def test_size_pass_warn_fail(facts):
    x = one(facts, "memory.size", vm(size=8 * GIB))
    assert x["status"] == P.PASS and "With VFIO, QEMU pins all guest RAM" in x["message"]
    assert x["evidence"]["vfio devices"] == 1 and x["evidence"]["libvirt memlock limit"] == 9 * GIB
    # over MemAvailable (40 GiB), under MemTotal less the pools (64 - 10 GiB)
    x = one(facts, "memory.size", vm(size=45 * GIB))
    assert x["status"] == P.WARN and x["qemu_effect"] is None and "exceed its MemAvailable (40 GiB)" in x["message"]
    x = one(facts, "memory.size", vm(size=56 * GIB))
    assert x["status"] == P.FAIL and x["qemu_effect"] == "refuse"
    assert "outside the hugepage pools (54 GiB)" in x["message"]
    assert "vfio %s: memory listener initialization failed" % DEV in x["message"]


def test_size_without_vfio_and_with_a_viommu(facts):
    # no device selected: no VFIO; beyond RAM + swap with heuristic overcommit: refused
    r = P.evaluate(facts, ["memory"], [], host="h1", params={"guest_memory": vm(size=80 * GIB)})
    x = find(r, "memory.size")
    assert x["qemu_effect"] == "refuse" and "cannot set up guest memory 'pc.ram'" in x["message"]
    facts["memory"]["swap_total"] = 64 * GIB
    x = find(P.evaluate(facts, ["memory"], [], host="h1", params={"guest_memory": vm(size=80 * GIB)}),
             "memory.size")
    assert x["status"] == P.FAIL and x["qemu_effect"] == "requirement" and "swapped or OOM-killed" in x["message"]


def test_viommu_factor_in_the_memlock_limit(gathered):
    mem = vm(size=8 * GIB)
    r = P.evaluate(gathered, ["memory"], [DEV, DEV2], host="h1", params={"guest_memory": mem, "viommu": "intel-iommu"})
    x = find(r, "memory.size")
    assert x["evidence"]["libvirt memlock limit"] == 2 * 8 * GIB + GIB
    assert "behind the intel-iommu vIOMMU" in x["message"]
    assert MC.memlock_libvirt(MC.vm_memory(mem)[0], 2, None) == 9 * GIB
    assert MC.memlock_libvirt(MC.vm_memory(dict(mem, locked=True))[0], 2, "x") is None
    assert MC.memlock_libvirt(MC.vm_memory(dict(mem, hard_limit=20 * GIB))[0], 2, "x") == 20 * GIB
    assert MC.memlock_libvirt(MC.vm_memory(mem)[0], 0, None) == 0


def test_hard_limit_below_guest_ram(facts):
    x = one(facts, "memory.size", vm(size=8 * GIB, hard_limit=4 * GIB))
    assert x["status"] == P.FAIL and x["qemu_effect"] == "refuse" and "hard_limit (4 GiB)" in x["message"]
    x = one(facts, "memory.size", vm(size=8 * GIB, hard_limit=4 * GIB), viommu="intel-iommu")
    assert x["status"] == P.FAIL and x["qemu_effect"] == "requirement"


def test_size_on_bound_nodes(facts):
    x = one(facts, "memory.size", vm(size=19 * GIB, host_nodes="1"))
    assert x["status"] == P.WARN and "host node(s) 1" in x["message"] and "MemFree (18 GiB)" in x["message"]
    x = one(facts, "memory.size", vm(size=33 * GIB, host_nodes="1"))
    assert x["status"] == P.FAIL and x["evidence"]['memory.nodes."1".total'] == 32 * GIB
    # hugepage-backed memory is left to memory.hugepages
    x = one(facts, "memory.size", vm(size=8 * GIB, hugepages=[{"size": GIB}]))
    assert x["status"] == P.PASS and x["evidence"]["not hugepage-backed"] == 0


# ---------------------------------------------------------------------------
# memory.numa_locality


def test_numa_locality(facts):
    x = one(facts, "memory.numa_locality", vm(host_nodes="0"), device=DEV)
    assert x["status"] == P.WARN and x["qemu_effect"] is None
    assert "%s is on host node 1, and the VM's memory is on node(s) 0" % DEV in x["message"]
    assert "Bind the VM's memory" in x["remedy"] and "node 1" in x["remedy"]
    assert x["evidence"]["devices.\"%s\".numa_node" % DEV] == 1
    x = one(facts, "memory.numa_locality", vm(host_nodes="0"), device=DEV2, devices=DEV2)
    assert x["status"] == P.PASS
    cells = [{"id": 0, "size": 2 * GIB, "host_nodes": "0"}, {"id": 1, "size": 2 * GIB, "host_nodes": "1"}]
    assert one(facts, "memory.numa_locality", vm(numa=cells), device=DEV)["status"] == P.PASS
    x = one(facts, "memory.numa_locality", vm(), device=DEV)
    assert x["status"] == P.NA and "not bound to host NUMA nodes" in x["message"]
    facts["devices"][DEV]["numa_node"] = None
    x = one(facts, "memory.numa_locality", vm(host_nodes="0"), device=DEV)
    assert x["status"] == P.NA and "numa_node -1" in x["message"]


def test_numa_locality_single_node_and_old_facts(tmp_path):
    root = str(tmp_path)
    synthetic.build(root, n_devices=2, vfio=(0,))
    memory_tree.build(root)
    f = iommu_facts.gather(root=root, sysfs_only=True)
    x = one(f, "memory.numa_locality", vm(host_nodes="0"), device=DEV)
    assert x["status"] == P.NA and "single NUMA node" in x["message"]
    del f["memory"]
    for cid in MEM_CHECKS:
        x = one(f, cid, vm(host_nodes="0", hugepages=[{"size": 2 * MIB}]),
                device=DEV if cid == "memory.numa_locality" else None)
        assert "no memory section" in x["message"]
        assert x["status"] == (P.WARN if cid == "memory.hugepages" else P.NA), cid


def test_mdev_takes_its_parents_node(facts):
    facts["mdevs"][MDEV] = {"uuid": MDEV, "parent": DEV, "numa_node": 1, "has_iommu": False,
                            "vfio": {"bound": True, "driver": "vfio_mdev"}, "vfio_cdev": "vfio9"}
    r = run(facts, vm(host_nodes="0"), devices=[MDEV])
    x = find(r, "memory.numa_locality", MDEV)
    assert x["status"] == P.WARN and x["evidence"]['mdevs."%s".numa_node' % MDEV] == 1


# ---------------------------------------------------------------------------
# parameters, release independence, robustness


def test_sizes_and_node_sets_in_the_parameter(facts):
    x = one(facts, "memory.hugepages", vm(size="1G", hugepages=[{"size": "2048k", "nodeset": None}]))
    assert x["status"] == P.PASS and "512 2 MiB pages" in x["message"]
    assert MC.size_bytes("4GiB") == 4 * GIB and MC.size_bytes(" 512 MB ") == 512 * MIB and MC.size_bytes(7) == 7
    for bad in ("4X", "-1", "1.5G", True, [], -3):
        assert MC.size_bytes(bad) is None, bad
    assert MC.node_set("0-3,^2") == {0, 1, 3} and MC.node_set([1, "3-4"]) == {1, 3, 4}
    assert MC.node_set("x") is None and MC.nodes_text({0, 1, 2, 5}) == "0-2,5"
    x = one(facts, "memory.size", vm(size="lots"))
    assert x["status"] == P.NA and "size='lots' is not a size" in x["message"]
    r = P.evaluate(facts, ["memory"], DEV, host="h1", params={"guest_memory": "8G"})
    assert find(r, "config.profiles")["status"] == P.FAIL
    assert "guest_memory must be the memory dict" in find(r, "config.profiles")["message"]
    # the whole vm_requirements result is accepted too
    full = {"profiles": ["passthrough"], "memory": vm(size=GIB, hugepages=[{"size": 2 * MIB}])}
    r = P.evaluate(facts, ["memory"], DEV, host="h1", params={"guest_memory": full})
    assert find(r, "memory.hugepages")["status"] == P.PASS


def test_release_independence(facts):
    """The memory rules are the kernel's and QEMU's allocation paths, the same in every release: the memory
    findings do not change with qemu_version (given through live_migration, which reads it)."""
    mem = vm(size=4 * GIB, host_nodes="0", hugepages=[{"size": 2 * MIB}])

    def memory_findings(result):
        return [(x["id"], x["device"], x["status"], x["message"], x["qemu_effect"]) for x in result["findings"]
                if x["id"].startswith("memory.")]

    base = memory_findings(P.evaluate(facts, ["memory"], [DEV, DEV2], host="h1", params={"guest_memory": mem}))
    assert len(base) == 4 and {f[2] for f in base} == {P.FAIL, P.WARN, P.PASS}
    for release in ("10.0", "10.1", "10.2", "11.0", "11.1", "10.0.13"):
        r = P.evaluate(facts, ["memory", "live_migration"], [DEV, DEV2], host="h1",
                       params={"guest_memory": mem, "qemu_version": release})
        assert memory_findings(r) == base, release


def test_quoted_qemu_words_are_in_the_binary():
    try:
        strings = open(QEMU_WORDS_11_1, encoding="latin-1").read()
    except OSError:
        pytest.skip("no QEMU strings at %s" % QEMU_WORDS_11_1)
    for words in ("unable to map backing store for guest RAM", "qemu_prealloc_mem: preallocating memory failed",
                  "cannot bind memory to host NUMA nodes", "cannot set up guest memory '%s'",
                  "memory listener initialization failed: ", "Region %s: ",
                  "vfio_container_dma_map(%p, 0x%lx, 0x%lx, %p) = %d (%s)",
                  "backend '%s' memory size must be multiple of %s"):
        assert words in strings, words


MEMORY = st.fixed_dictionaries({}, optional={
    "size": st.one_of(st.none(), st.integers(-5, 1 << 42), st.sampled_from(["4G", "x", "", "1.5G"]), st.booleans()),
    "hugepages": st.one_of(st.none(), st.text(max_size=3), st.lists(st.one_of(st.integers(), st.fixed_dictionaries(
        {}, optional={"size": st.one_of(st.none(), st.sampled_from([2 * MIB, GIB, 4096, 0, "2M", "junk"])),
                      "nodeset": st.one_of(st.none(), st.sampled_from(["0", "0-1", "^", "9", 3]))})), max_size=3)),
    "host_nodes": st.one_of(st.none(), st.sampled_from(["0", "1", "0-1", "7", "", "a", 2])),
    "policy": st.one_of(st.none(), st.sampled_from(["strict", "preferred", "interleave", 5])),
    "numa": st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=2), st.fixed_dictionaries({}, optional={
        "id": st.one_of(st.integers(-1, 3), st.text(max_size=2)),
        "size": st.one_of(st.none(), st.integers(0, 1 << 36), st.just("2G")),
        "host_nodes": st.one_of(st.none(), st.sampled_from(["0", "1", "5", "x"])),
        "policy": st.one_of(st.none(), st.just("preferred"))})), max_size=3)),
    "locked": st.one_of(st.booleans(), st.none(), st.just("yes")),
    "hard_limit": st.one_of(st.none(), st.integers(0, 1 << 40), st.just("q"))})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_random_memory_never_breaks_the_gate(gathered, data):
    f = copy.deepcopy(gathered)
    if data.draw(st.booleans()):
        f["memory"]["nodes"]["1"] = data.draw(st.one_of(st.none(), st.integers(), st.fixed_dictionaries(
            {}, optional={"total": st.one_of(st.none(), st.integers(0, 1 << 40), st.text(max_size=3)),
                          "free": st.one_of(st.none(), st.integers(0, 1 << 40)),
                          "hugepages": st.one_of(st.none(), st.just({"2048kB": {"free": "x", "size": None}}))})))
    if data.draw(st.booleans()):
        f["memory"]["hugepages"]["2048kB"] = data.draw(st.one_of(st.none(), st.fixed_dictionaries(
            {}, optional={"free": st.one_of(st.none(), st.integers(-3, 5000), st.text(max_size=3)),
                          "reserved": st.one_of(st.none(), st.integers(-3, 10)),
                          "overcommit": st.one_of(st.none(), st.integers(0, 10000))})))
    if data.draw(st.booleans()):
        f["devices"][DEV]["numa_node"] = data.draw(st.one_of(st.none(), st.integers(-1, 3), st.text(max_size=2)))
    mem = data.draw(MEMORY)
    r = P.evaluate(f, ["memory"], [DEV, DEV2], host="h", params={"guest_memory": mem})
    bad = [x for x in r["findings"] if "Internal error" in x["message"]]
    assert not bad, bad
    for x in r["findings"]:
        if x["id"].startswith("memory."):
            assert x["qemu_effect"] in (None, "refuse", "requirement"), x
            assert x["status"] in (P.PASS, P.WARN, P.FAIL, P.NA)
    json.dumps(r)


# ---------------------------------------------------------------------------
# check(vm=) and placement


DOMAIN = """<domain type='kvm'><name>%(name)s</name><memory unit='MiB'>%(mib)d</memory>
  <memoryBacking><hugepages><page size='%(page)s' unit='KiB'/></hugepages></memoryBacking>
  %(numatune)s
  <devices><hostdev mode='subsystem' type='pci' managed='yes'><source>
    <address domain='0x0000' bus='0x%(bus)s' slot='0x%(slot)s' function='0x0'/></source></hostdev></devices>
</domain>"""


def domain(name, mib, page=2048, nodes=None, dev=DEV):
    bus, rest = dev.split(":")[1:]
    slot = rest.split(".")[0]
    numatune = "<numatune><memory mode='strict' nodeset='%s'/></numatune>" % nodes if nodes else ""
    return DOMAIN % {"name": name, "mib": mib, "page": page, "numatune": numatune, "bus": bus, "slot": slot}


def test_check_vm_adds_the_memory_profile(facts):
    xml = domain("small", 512, nodes="0")
    req = requirements(xml)
    assert req["memory"]["size"] == 512 * MIB and "memory" not in req["profiles"]
    r = check({"iommu": facts}, vm=xml, host="h1")
    assert "memory" in r["profiles"] and r["params"]["guest_memory"]["size"] == 512 * MIB
    assert find(r, "memory.hugepages")["status"] == P.PASS
    assert find(r, "memory.numa_locality", DEV)["status"] == P.WARN      # DEV on node 1, memory on node 0
    r = check({"iommu": facts}, vm=domain("big", 8192), host="h1")
    x = find(r, "memory.hugepages")
    assert x["status"] == P.FAIL and r["status"] == P.FAIL and x["qemu_effect"] == "refuse"
    # explicit profiles without memory: the VM's memory is not asked about, and no configuration error
    r = check({"iommu": facts}, vm=domain("big", 8192), profiles=["passthrough"], host="h1")
    assert not [x for x in r["findings"] if x["id"].startswith("memory.") or x["id"] == "config.profiles"]
    # an explicit guest_memory wins over the definition's
    r = check({"iommu": facts}, vm=domain("big", 8192), params={"guest_memory": vm(size=GIB)}, host="h1")
    assert find(r, "memory.hugepages")["status"] == P.NA


def test_placement_uses_the_vms_memory(facts, tmp_path):
    root = str(tmp_path)
    small = {0: {"total": 64 * GIB_KB, "free": 40 * GIB_KB, "pools": {2048: (64, 64, 0)}}}
    two_node_tree(root, pools={2048: (64, 64, 0, 0)}, nodes=small)
    small_pool = iommu_facts.gather(root=root, sysfs_only=True)
    hosts = {"big": {"ansible_facts": {"iommu": facts}}, "small": {"ansible_facts": {"iommu": small_pool}}}
    res = fleet.placement(hosts, [domain("db", 512, nodes="1")])
    cells = res["matrix"]["db"]
    assert cells["big"]["status"] == P.PASS
    assert cells["small"]["status"] == P.FAIL and cells["small"]["first"]["id"] in ("memory.hugepages",
                                                                                    "memory.size")
    for host, entry in hosts.items():
        assert check(entry["ansible_facts"], vm=domain("db", 512, nodes="1"))["status"] == cells[host]["status"]


PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  vars:
    iommu: "{{ lookup('ansible.builtin.file', playbook_dir + '/facts.json') | from_json }}"
    fits: "{{ lookup('ansible.builtin.file', playbook_dir + '/fits.xml') }}"
    short: "{{ lookup('ansible.builtin.file', playbook_dir + '/short.xml') }}"
    ok: "{{ {'iommu': iommu} | iommu.host.check(vm=fits) }}"
    bad: "{{ {'iommu': iommu} | iommu.host.check(vm=short) }}"
    matrix: "{{ {'hv1': {'ansible_facts': {'iommu': iommu}}} | iommu.host.placement([fits, short]) }}"
  tasks:
    - ansible.builtin.assert:
        that:
          - "'memory' in ok.profiles"
          - (ok.findings | selectattr('id', 'eq', 'memory.hugepages') | first).status == 'pass'
          - (bad.findings | selectattr('id', 'eq', 'memory.hugepages') | first).status == 'fail'
          - (bad.findings | selectattr('id', 'eq', 'memory.hugepages') | first).qemu_effect == 'refuse'
          - "'unable to map backing store' in (bad.findings | selectattr('id', 'eq', 'memory.hugepages') | first).message"
          - matrix.matrix.short.hv1.first.id == 'memory.hugepages'
          - matrix.matrix.fits.hv1.status != 'fail'
"""


def test_memory_checks_in_a_playbook(gathered, tmp_path):
    (tmp_path / "facts.json").write_text(json.dumps(gathered))
    (tmp_path / "fits.xml").write_text(domain("fits", 512))
    (tmp_path / "short.xml").write_text(domain("short", 4096))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                          "-c", "local", str(tmp_path / "play.yml")], env=env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    assert out.returncode == 0 and "All assertions passed" in out.stdout, out.stdout


def test_size_not_a_multiple_of_the_page_warns(facts):
    x = one(facts, "memory.hugepages", vm(size=GIB + 512 * MIB, hugepages=[{"size": GIB}]))
    assert x["status"] == P.WARN and "1.5 GiB of guest RAM is not a multiple of the 1 GiB page size" in x["message"]
    assert "memory size must be multiple of 1 GiB" in x["message"] and "2 1 GiB pages" in x["message"]


def test_empty_node_set_is_not_a_binding(gathered):
    """Found by hypothesis: host_nodes '' (an empty node set) crashed memory.hugepages (IndexError)."""
    r = P.evaluate(copy.deepcopy(gathered), ["memory"], [DEV], host="h",
                   params={"guest_memory": {"size": 1, "host_nodes": "", "hugepages": [{}]}})
    assert not [x for x in r["findings"] if "Internal error" in x["message"]]
    huge = [x for x in r["findings"] if x["id"] == "memory.hugepages"][0]
    assert "names no node" in huge["message"], huge
