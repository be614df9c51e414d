"""The memory side of a VM start on a real kernel: ansible_facts.iommu.memory against what the guest's
kernel shows through other paths (/proc/meminfo via grep, the pool files via cat), after reserving 2 MiB
hugepages at runtime, and a libvirt domain with hugepage backing gated through check(vm=): one that
fits the reserved pool and one that does not."""
import json
import os

import pytest

from guestops import NIC, bind_vfio

PAGES = 48                       # 2 MiB pages reserved at runtime (96 MiB of the guest's 1 GiB)
POOL = "/sys/kernel/mm/hugepages/hugepages-2048kB"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DOMAIN = """<domain type='kvm'>
  <name>%(name)s</name>
  <memory unit='MiB'>%(mib)d</memory>
  <memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>
  <os><type arch='x86_64' machine='pc-q35-10.1'>hvm</type></os>
  <features><ioapic driver='qemu'/></features>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x00' slot='0x09' function='0x0'/></source>
    </hostdev>
    <iommu model='intel'><driver intremap='on' caching_mode='on' aw_bits='39'/></iommu>
  </devices>
</domain>"""


def sh(guest, command):
    res = guest.run(command, timeout=120)
    assert res.rc == 0, res
    return res.stdout


def reserve(guest, pages):
    sh(guest, "echo %d > %s/nr_hugepages" % (pages, POOL))
    return int(sh(guest, "cat %s/nr_hugepages" % POOL).strip())


def meminfo(guest):
    """{key: value in the file's own unit} from `grep` of /proc/meminfo: a different path than the module's."""
    out = {}
    for line in sh(guest, "grep -E '^(MemTotal|MemAvailable|HugePages_|Hugepagesize|Hugetlb)' /proc/meminfo")\
            .splitlines():
        key, value = line.split(":", 1)
        out[key.strip()] = int(value.split()[0])
    return out


def play(fits, short):
    return {"name": "memory", "hosts": "intel", "gather_facts": False, "tasks": [
        {"name": "gather", "iommu.host.iommu_facts": {"sysfs_only": True}},
        {"name": "gate", "ansible.builtin.set_fact": {
            "fits": "{{ ansible_facts | iommu.host.check(vm=%s) }}" % json.dumps(fits),
            "short": "{{ ansible_facts | iommu.host.check(vm=%s) }}" % json.dumps(short)}},
        {"name": "result", "ansible.builtin.debug": {"msg": {"fits": "{{ fits }}", "short": "{{ short }}"}}}]}


def finding(result, check_id, device=None):
    hits = [f for f in result["findings"] if f["id"] == check_id and f["device"] == device]
    assert len(hits) == 1, (check_id, [(f["id"], f["device"]) for f in result["findings"]])
    return hits[0]


@pytest.mark.testbed("intel")
def test_hugepage_facts_and_gate_on_the_intel_guest(testbed, ansible_playbook):
    guest = testbed["intel"]
    bind_vfio(guest)
    got = reserve(guest, PAGES)
    assert got == PAGES, "the guest could reserve only %d of %d 2 MiB pages" % (got, PAGES)
    try:
        fits = DOMAIN % {"name": "fits", "mib": 64}        # 32 pages of the 48
        short = DOMAIN % {"name": "short", "mib": 256}     # 128 pages
        result = ansible_playbook(play(fits, short))
        assert result.rc == 0, result
        facts = result.result("intel", "gather")["ansible_facts"]["iommu"]
        gate = result.result("intel", "result")["msg"]
        mem = facts["memory"]
        info = meminfo(guest)

        # facts = /proc/meminfo (grep) and the pool files (cat), read by other paths in the guest
        assert mem["source"] == "/proc/meminfo"
        assert mem["total"] == info["MemTotal"] * 1024
        assert abs(mem["available"] - info["MemAvailable"] * 1024) < 64 << 20    # it moves a little
        assert mem["hugepage_size_default"] == info["Hugepagesize"] * 1024 == 2 << 20
        assert mem["hugetlb"] == info["Hugetlb"] * 1024 == PAGES * (2 << 20)
        pool = mem["hugepages"]["2048kB"]
        assert pool["size"] == 2 << 20 and pool["source"] == POOL
        assert (pool["total"], pool["free"], pool["reserved"], pool["surplus"]) == (
            info["HugePages_Total"], info["HugePages_Free"], info["HugePages_Rsvd"], info["HugePages_Surp"])
        assert (pool["total"], pool["free"]) == (PAGES, PAGES)
        # every page size the kernel offers has its pool (TCG's -cpu max has pdpe1gb: 1 GiB pages too)
        sizes = sh(guest, "ls /sys/kernel/mm/hugepages").split()
        assert sorted(mem["hugepages"]) == sorted(s[len("hugepages-"):] for s in sizes)
        # NUMA: one node (no -numa on the command line), and the devices have none of their own
        online = sh(guest, "cat /sys/devices/system/node/online").strip()
        assert mem["nodes_online"] == [0] and online == "0" and list(mem["nodes"]) == ["0"]
        node = mem["nodes"]["0"]
        assert node["cpus"] == [0] and node["hugepages"]["2048kB"]["total"] == PAGES
        node_total = int(sh(guest, "grep MemTotal /sys/devices/system/node/node0/meminfo").split()[3])
        assert node["total"] == node_total * 1024
        assert sh(guest, "cat /sys/bus/pci/devices/%s/numa_node" % NIC).strip() == "-1"
        assert facts["devices"][NIC]["numa_node"] is None

        # the gate: the domain whose hugepages fit, and the one that does not
        ok, bad = gate["fits"], gate["short"]
        assert "memory" in ok["profiles"] and ok["params"]["guest_memory"]["size"] == 64 << 20
        x = finding(ok, "memory.hugepages")
        assert x["status"] == "pass" and "32 2 MiB pages (48 free" in x["message"], x
        assert finding(ok, "memory.size")["status"] == "pass"
        assert finding(ok, "memory.numa_locality", NIC)["status"] == "not_applicable"
        x = finding(bad, "memory.hugepages")
        assert x["status"] == "fail" and x["qemu_effect"] == "refuse", x
        assert "needs 128 2 MiB pages and the host has 48 free" in x["message"]
        assert "unable to map backing store for guest RAM: Cannot allocate memory" in x["message"]
        assert "echo 128 > %s/nr_hugepages" % POOL in x["remedy"]
        assert bad["status"] == "fail"
        os.makedirs(os.path.join(REPO, "build"), exist_ok=True)
        with open(os.path.join(REPO, "build", "testbed-memory-intel.json"), "w") as f:
            json.dump({"memory": mem, "fits": [x for x in ok["findings"] if x["id"].startswith("memory.")],
                       "short": [x for x in bad["findings"] if x["id"].startswith("memory.")]}, f, indent=1)
    finally:
        reserve(guest, 0)
