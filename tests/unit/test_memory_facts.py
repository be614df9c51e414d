"""ansible_facts.iommu.memory and devices[a].numa_node: readers on fake sysfs/procfs trees, and their
pure parsers (hypothesis)."""
import os
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils import iommu_memory as M
from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from tests.support import memory_tree, synthetic

GIB_KB = memory_tree.GIB_KB
PROC_MEMINFO = """MemTotal:       24684096 kB
MemFree:        13213860 kB
MemAvailable:   20635180 kB
SwapTotal:             0 kB
Active(anon):       1772 kB
HugePages_Total:      16
HugePages_Free:       12
HugePages_Rsvd:        2
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:           32768 kB
"""


# ---------------------------------------------------------------------------
# parsers


def test_parse_meminfo_units_and_node_prefix():
    info = M.parse_meminfo(PROC_MEMINFO)
    assert info["MemTotal"] == 24684096 * 1024 and info["Active(anon)"] == 1772 * 1024
    assert info["HugePages_Total"] == 16 and info["HugePages_Rsvd"] == 2     # counts stay counts
    assert info["Hugepagesize"] == 2 << 20
    node = M.parse_meminfo("Node 1 MemTotal:       1012345 kB\nNode 1 MemFree:  10 kB\nNode 1 HugePages_Free:  3\n")
    assert node == {"MemTotal": 1012345 * 1024, "MemFree": 10240, "HugePages_Free": 3}
    assert M.parse_meminfo("garbage\nMemTotal: lots\n: 5 kB\nMemFree: 5 MB\n") == {}
    assert M.parse_meminfo(None) == {} and M.parse_meminfo("") == {}
    assert M.parse_meminfo("MemTotal: 1 kB\nMemTotal: 2 kB\n") == {"MemTotal": 1024}


def test_parse_hugepage_dir():
    assert M.parse_hugepage_dir("hugepages-2048kB") == 2 << 20
    assert M.parse_hugepage_dir("hugepages-1048576kB") == 1 << 30
    assert M.parse_hugepage_dir("hugepages-64kB") == 64 << 10
    for bad in ("hugepages-0kB", "hugepages-2048KB", "hugepages-2M", "hugepages-", "cpu0", "", None, 5,
                "hugepages-2048kB\n", "hugepages-١٢kB"):
        assert M.parse_hugepage_dir(bad) is None, bad
    assert M.pool_key(2 << 20) == "2048kB" and M.pool_key(1 << 30) == "1048576kB"


def test_parse_cpulist():
    assert M.parse_cpulist("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert M.parse_cpulist("0") == [0] and M.parse_cpulist("") == [] and M.parse_cpulist("\n") == []
    assert M.parse_cpulist(" 5-5 ,1 ") == [1, 5]
    for bad in ("3-1", "a", "0-", "-1", "1,,2", "0-70000", "0x1", None, 7, "1;2", "²"):
        assert M.parse_cpulist(bad) is None, bad


def test_parse_counts_nodes_distances():
    assert M.parse_count("42\n") == 42 and M.parse_count("0") == 0
    for bad in ("-1", "", "x", "4 2", "²", None, "1" * 25):
        assert M.parse_count(bad) is None, bad
    assert M.parse_numa_node("1\n") == 1 and M.parse_numa_node("0") == 0
    for none in ("-1", "", "node1", None, "99999999", "٣"):
        assert M.parse_numa_node(none) is None, none
    assert M.parse_distances("10 21\n") == [10, 21] and M.parse_distances("") == []
    assert M.parse_distances("10 x") is None and M.parse_distances(None) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_meminfo_parser_total(text):
    out = M.parse_meminfo(text)
    assert all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in out.items())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["MemTotal", "MemFree", "Hugetlb", "HugePages_Total"]),
                       st.integers(0, 1 << 40), min_size=1), st.booleans())
def test_meminfo_parser_reads_what_the_kernel_writes(values, node):
    prefix = "Node 3 " if node else ""
    text = "".join("%s%s: %12d%s\n" % (prefix, k, v, "" if k.startswith("HugePages") else " kB")
                   for k, v in values.items())
    out = M.parse_meminfo(text)
    assert out == dict((k, v if k.startswith("HugePages") else v * 1024) for k, v in values.items())


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.integers(0, 1 << 24).map(lambda n: "hugepages-%dkB" % n)))
def test_hugepage_dir_parser_total(name):
    size = M.parse_hugepage_dir(name)
    assert size is None or (size > 0 and size % 1024 == 0 and M.pool_key(size) == name[len("hugepages-"):])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 5)), max_size=8))
def test_cpulist_parser_round_trip(ranges):
    text = ",".join("%d-%d" % (lo, lo + n) if n else "%d" % lo for lo, n in ranges)
    expected = sorted(set(x for lo, n in ranges for x in range(lo, lo + n + 1)))
    assert M.parse_cpulist(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789-,^ x\n"), max_size=30))
def test_cpulist_parser_total(text):
    out = M.parse_cpulist(text)
    assert out is None or (out == sorted(set(out)) and all(isinstance(n, int) and 0 <= n < M.MAX_ID for n in out))


# ---------------------------------------------------------------------------
# readers on fake trees


def _tree(tmp_path, **kw):
    root = str(tmp_path)
    addrs = synthetic.build(root, n_devices=3, vfio=(0,))
    memory_tree.build(root, **kw)
    return root, addrs


def test_memory_facts_from_a_two_node_host(tmp_path):
    root, addrs = _tree(
        tmp_path, total_kb=64 * GIB_KB, available_kb=40 * GIB_KB,
        pools={2048: (1024, 1000, 8, 0), GIB_KB: (4, 4, 0, 0)},
        nodes={0: {"total": 32 * GIB_KB, "free": 20 * GIB_KB, "cpulist": "0-3,8",
                   "pools": {2048: (512, 500, 0), GIB_KB: (4, 4, 0)}},
               1: {"total": 32 * GIB_KB, "free": 18 * GIB_KB, "cpulist": "4-7,9-11",
                   "pools": {2048: (512, 500, 0), GIB_KB: (0, 0, 0)}}},
        numa={synthetic.pci_address(0): "1", synthetic.pci_address(1): "0"})
    reader = sysfs.SysfsReader(root)
    mem = M.read_memory(reader)
    assert reader.errors == []
    assert mem["total"] == 64 << 30 and mem["available"] == 40 << 30 and mem["source"] == "/proc/meminfo"
    assert mem["hugepage_size_default"] == 2 << 20 and mem["hugetlb"] == (1024 * 2 + 4 * 1024) << 20
    assert mem["overcommit_memory"] == 0
    assert sorted(mem["hugepages"]) == ["1048576kB", "2048kB"]
    assert mem["hugepages"]["2048kB"] == {"size": 2 << 20, "total": 1024, "free": 1000, "reserved": 8, "surplus": 0,
                                          "overcommit": 0, "source": "/sys/kernel/mm/hugepages/hugepages-2048kB"}
    assert mem["nodes_online"] == [0, 1] and sorted(mem["nodes"]) == ["0", "1"]
    node1 = mem["nodes"]["1"]
    assert (node1["id"], node1["total"], node1["free"]) == (1, 32 << 30, 18 << 30)
    assert node1["cpus"] == [4, 5, 6, 7, 9, 10, 11] and node1["cpulist"] == "4-7,9-11"
    assert node1["distances"] == [21, 10] and node1["source"] == "/sys/devices/system/node/node1"
    assert node1["hugepages"]["2048kB"] == {"size": 2 << 20, "total": 512, "free": 500, "surplus": 0,
                                            "source": "/sys/devices/system/node/node1/hugepages/hugepages-2048kB"}
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    assert facts["memory"] == mem
    assert facts["devices"][addrs[0]]["numa_node"] == 1 and facts["devices"][addrs[1]]["numa_node"] == 0
    assert facts["devices"][addrs[2]]["numa_node"] is None      # -1: no node


def test_values_agree_with_meminfo_read_another_way(tmp_path):
    """The facts equal /proc/meminfo and the pool files read line by line here."""
    root, _addrs = _tree(tmp_path, pools={2048: (16, 12, 2, 0)})
    mem = iommu_facts.gather(root=root, sysfs_only=True)["memory"]
    raw = {}
    for line in open(os.path.join(root, "proc/meminfo")):
        key, value = line.split(":")
        raw[key] = int(value.split()[0])
    assert mem["total"] == raw["MemTotal"] * 1024 and mem["available"] == raw["MemAvailable"] * 1024
    pool = mem["hugepages"]["%dkB" % raw["Hugepagesize"]]
    assert (pool["total"], pool["free"], pool["reserved"], pool["surplus"]) == (
        raw["HugePages_Total"], raw["HugePages_Free"], raw["HugePages_Rsvd"], raw["HugePages_Surp"])


def test_mdev_inherits_its_parents_node(tmp_path):
    root, addrs = _tree(tmp_path, numa={synthetic.pci_address(0): "1"})
    parent = os.path.realpath(os.path.join(root, "sys/bus/pci/devices", addrs[0]))
    uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
    os.makedirs(os.path.join(parent, uuid))
    os.makedirs(os.path.join(root, "sys/bus/mdev/devices"))
    os.symlink(os.path.join(parent, uuid), os.path.join(root, "sys/bus/mdev/devices", uuid))
    other = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1002"
    os.makedirs(os.path.join(root, "sys/devices/virtual/mtty/mtty", other))
    os.symlink(os.path.join(root, "sys/devices/virtual/mtty/mtty", other),
               os.path.join(root, "sys/bus/mdev/devices", other))
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    assert facts["mdevs"][uuid]["parent"] == addrs[0] and facts["mdevs"][uuid]["numa_node"] == 1
    assert facts["mdevs"][other]["numa_node"] is None           # parent is no PCI device


def test_missing_and_odd_files_give_absent_values(tmp_path):
    root, addrs = _tree(tmp_path, pools={2048: (4, 4, 0, 0)})
    # no meminfo at all, garbage counts, a stray pool directory name, an odd node list
    os.remove(os.path.join(root, "proc/meminfo"))
    with open(os.path.join(root, "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), "w") as f:
        f.write("many\n")
    os.makedirs(os.path.join(root, "sys/kernel/mm/hugepages/hugepages-bogus"))
    with open(os.path.join(root, "sys/devices/system/node/node0/cpulist"), "w") as f:
        f.write("0-\n")
    with open(os.path.join(root, "sys/devices/system/node/online"), "w") as f:
        f.write("zero\n")
    with open(os.path.realpath(os.path.join(root, "sys/bus/pci/devices", addrs[1], "numa_node")), "w") as f:
        f.write("banana\n")
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    mem = facts["memory"]
    assert mem["total"] is None and mem["source"] is None and mem["hugepage_size_default"] is None
    assert list(mem["hugepages"]) == ["2048kB"] and mem["hugepages"]["2048kB"]["free"] is None
    assert mem["hugepages"]["2048kB"]["total"] == 4
    assert mem["nodes_online"] is None and mem["nodes"]["0"]["cpus"] is None
    assert facts["devices"][addrs[1]]["numa_node"] is None
    paths = [f["message"] for f in facts["findings"] if f["code"] == "sysfs_read"]
    assert any("free_hugepages: not a count" in p for p in paths)
    assert any("node0/cpulist: not a CPU list" in p for p in paths)


def test_host_without_hugetlbfs_or_numa_sysfs(tmp_path):
    root, _addrs = _tree(tmp_path)
    shutil.rmtree(os.path.join(root, "sys/kernel/mm"))
    shutil.rmtree(os.path.join(root, "sys/devices/system/node"))
    mem = iommu_facts.gather(root=root, sysfs_only=True)["memory"]
    assert mem["hugepages"] == {} and mem["hugepages_source"] is None
    assert mem["nodes"] == {} and mem["nodes_source"] is None and mem["total"] == 16 << 30


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_garbage_in_every_memory_file_never_raises(tmp_path_factory, data):
    root = str(tmp_path_factory.mktemp("garbage"))
    synthetic.build(root, n_devices=2)
    memory_tree.build(root, pools={2048: (1, 1, 0, 0)})
    junk = st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
    for rel in ("proc/meminfo", "proc/sys/vm/overcommit_memory", "sys/devices/system/node/online",
                "sys/devices/system/node/node0/meminfo", "sys/devices/system/node/node0/cpulist",
                "sys/devices/system/node/node0/distance",
                "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
                "sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages"):
        if data.draw(st.booleans()):
            with open(os.path.join(root, rel), "w", encoding="utf-8", errors="surrogatepass") as f:
                f.write(data.draw(junk))
    mem = M.read_memory(sysfs.SysfsReader(root))
    assert mem["total"] is None or isinstance(mem["total"], int)
    assert all(v["free"] is None or isinstance(v["free"], int) for v in mem["hugepages"].values())
