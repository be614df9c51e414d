"""Add the memory side of a host to a synthetic sysfs/procfs tree (tests/support/synthetic.py):
/proc/meminfo, /proc/sys/vm/overcommit_memory, hugepage pools per size and per NUMA node, node
meminfo/cpulist/distance, and each PCI device's numa_node - shaped as Linux 7.3 writes them
(mm/hugetlb_sysfs.c, drivers/base/node.c, fs/proc/meminfo.c, drivers/pci/pci-sysfs.c)."""
import os

from ansible_collections.iommu.host.plugins.module_utils import nodeset

GIB_KB = 1 << 20


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def meminfo(total_kb, free_kb, available_kb, hugetlb_kb=0, default_kb=2048, swap_kb=0, pools=None,
            commit_limit_kb=None, committed_kb=None):
    """/proc/meminfo text (the default-size pool's counts in HugePages_*)."""
    nr, free, resv, surp = (pools or {}).get(default_kb, (0, 0, 0, 0))[:4]
    lines = [("MemTotal", total_kb, True), ("MemFree", free_kb, True), ("MemAvailable", available_kb, True),
             ("Buffers", 1024, True), ("Cached", 4096, True), ("SwapTotal", swap_kb, True),
             ("SwapFree", swap_kb, True), ("Active(anon)", 100, True),
             ("CommitLimit", commit_limit_kb if commit_limit_kb is not None else total_kb // 2 + swap_kb, True),
             ("Committed_AS", committed_kb if committed_kb is not None else 1024, True),
             ("HugePages_Total", nr, False), ("HugePages_Free", free, False), ("HugePages_Rsvd", resv, False),
             ("HugePages_Surp", surp, False), ("Hugepagesize", default_kb, True), ("Hugetlb", hugetlb_kb, True)]
    return "".join("%-16s%8d%s\n" % (k + ":", v, " kB" if kb else "") for k, v, kb in lines)


def node_meminfo(node, total_kb, free_kb, pools=None, default_kb=2048):
    nr, free, _resv, surp = ((pools or {}).get(default_kb, (0, 0, 0, 0)) + (0, 0, 0, 0))[:4]
    lines = [("MemTotal", total_kb, True), ("MemFree", free_kb, True), ("MemUsed", total_kb - free_kb, True),
             ("Active", 10, True), ("HugePages_Total", nr, False), ("HugePages_Free", free, False),
             ("HugePages_Surp", surp, False)]
    return "".join("Node %d %-16s%8d%s\n" % (node, k + ":", v, " kB" if kb else "") for k, v, kb in lines)


def build(root, total_kb=16 * GIB_KB, available_kb=12 * GIB_KB, free_kb=None, pools=None, nodes=None,
          default_kb=2048, swap_kb=0, overcommit=0, numa=None, overcommit_pages=None, commit_limit_kb=None,
          committed_kb=None):
    """Write the memory files below ``root``.

    ``pools``: {page size kB: (nr, free, resv, surplus)} - the global pools (a size absent here has no
    directory: the kernel/CPU does not offer it). ``nodes``: {node: {"total": kB, "free": kB, "cpulist": str,
    "pools": {size kB: (nr, free, surplus)}}} (default: one node 0 holding everything). ``numa``: {PCI
    address: numa_node text} written to each device's numa_node (default "-1" for every device).
    ``overcommit_pages``: {size kB: nr_overcommit_hugepages}.
    """
    pools = pools if pools is not None else {2048: (0, 0, 0, 0), GIB_KB: (0, 0, 0, 0)}
    if nodes is None:
        nodes = {0: {"total": total_kb, "free": free_kb if free_kb is not None else available_kb, "cpulist": "0-3",
                     "pools": dict((s, (p[0], p[1], p[3])) for s, p in pools.items())}}
    hugetlb = sum(size * p[0] for size, p in pools.items())
    _write(os.path.join(root, "proc/meminfo"),
           meminfo(total_kb, free_kb if free_kb is not None else available_kb, available_kb, hugetlb, default_kb,
                   swap_kb, pools, commit_limit_kb, committed_kb))
    _write(os.path.join(root, "proc/sys/vm/overcommit_memory"), "%d\n" % overcommit)
    for size, (nr, free, resv, surp) in pools.items():
        base = os.path.join(root, "sys/kernel/mm/hugepages/hugepages-%dkB" % size)
        for name, value in (("nr_hugepages", nr), ("free_hugepages", free), ("resv_hugepages", resv),
                            ("surplus_hugepages", surp),
                            ("nr_overcommit_hugepages", (overcommit_pages or {}).get(size, 0))):
            _write(os.path.join(base, name), "%d\n" % value)
    ids = sorted(nodes)
    _write(os.path.join(root, "sys/devices/system/node/online"), nodeset.text(ids) + "\n")
    _write(os.path.join(root, "sys/devices/system/node/possible"), nodeset.text(ids) + "\n")
    for n in ids:
        spec = nodes[n]
        base = os.path.join(root, "sys/devices/system/node/node%d" % n)
        node_pools = spec.get("pools", {})
        _write(os.path.join(base, "meminfo"), node_meminfo(
            n, spec["total"], spec["free"], dict((s, (p[0], p[1], 0, p[2])) for s, p in node_pools.items()),
            default_kb))
        _write(os.path.join(base, "cpulist"), spec.get("cpulist", "") + "\n")
        _write(os.path.join(base, "distance"), " ".join("10" if m == n else "21" for m in ids) + "\n")
        for size, (nr, free, surp) in node_pools.items():
            pbase = os.path.join(base, "hugepages/hugepages-%dkB" % size)
            for name, value in (("nr_hugepages", nr), ("free_hugepages", free), ("surplus_hugepages", surp)):
                _write(os.path.join(pbase, name), "%d\n" % value)
    devices = os.path.join(root, "sys/bus/pci/devices")
    for addr in (os.listdir(devices) if os.path.isdir(devices) else []):
        target = os.path.realpath(os.path.join(devices, addr))
        _write(os.path.join(target, "numa_node"), "%s\n" % (numa or {}).get(addr, "-1"))
