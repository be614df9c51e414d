"""Benchmark (not a test): iommu.host.placement of 200 VM definitions x 2,000 hosts from cached facts.

The hosts' facts are gathered from the captured test-bed trees (tests/fixtures/sysfs, 7 profiles)
and varied 6 ways (tests/support/fleet.py): 42 distinct facts, each host holding its own deep copy
wrapped as hostvars entries ({ansible_facts: {iommu: ...}}), so nothing is shared by identity.
The 200 VMs are libvirt domain XML documents (vIOMMU model, aw-bits, caching-mode, fsts,
the assigned addresses and the name vary) and QEMU command lines, parsed by
iommu.host.vm_requirements inside the timed call, as the filter receives them.

Also measured: 2,000 hosts whose kernel command line text is unique (root=UUID=..., as in real
fleets; the gate reads the parsed command line, so they still share evaluations), and the cold cost
of one evaluation (every host's facts distinct), on 200 VMs x 40 distinct hosts.

Run: .venv/bin/python tests/benchmarks/bench_placement.py   (one core: taskset -c 0 ...)
"""
import copy
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "build", "collections"))

from ansible_collections.iommu.host.plugins.module_utils.fleet import api  # noqa: E402
from tests.support import fleet  # noqa: E402

ADDRESSES = ["0x09", "0x0a", "0x03"]
MODELS = [("intel", "<driver caching_mode='%(cm)s' aw_bits='%(aw)s'/>"),
          ("intel", "<driver caching_mode='on' aw_bits='%(aw)s' intremap='on'/>"),
          ("amd", "<driver intremap='on'/>"),
          ("virtio", "")]


def domain(i):
    model, driver = MODELS[i % len(MODELS)]
    params = {"cm": "on" if i % 5 else "off", "aw": (39, 48)[i % 2]}
    slot = ADDRESSES[(i // 4) % len(ADDRESSES)]
    return ("<domain type='kvm'><name>vm%03d</name><memory unit='GiB'>4</memory>"
            "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
            "<iommu model='%s'>%s</iommu>"
            "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
            "<address domain='0x0000' bus='0x00' slot='%s' function='0x0'/></source></hostdev>"
            "</devices></domain>" % (i, model, driver % params, slot))


def argv(i):
    return ("qemu-system-x86_64 -name vm%03d -machine q35,kernel-irqchip=split -m 4096 "
            "-device intel-iommu,caching-mode=on,aw-bits=%d -device vfio-pci,host=00:09.0" % (i, (39, 48)[i % 2]))


def vms(n=200):
    return [argv(i) if i % 10 == 9 else domain(i) for i in range(n)]


def hosts(n, vary=None):
    """vary="cmdline": each host's kernel command line text unique (root=UUID=..., as in real fleets);
    vary="distinct": a value the gate reads unique per host, so no two hosts share an evaluation."""
    out = {}
    for i, (name, entry) in enumerate(fleet.fleet(n).items()):
        entry = copy.deepcopy(entry)
        iommu = entry["ansible_facts"]["iommu"]
        if vary == "cmdline":
            iommu["cmdline"]["raw"] += " root=UUID=%08x-6b1e-4c7a-9d2f-%012x" % (i, i)
        elif vary == "distinct":
            iommu["kernel"]["release"] += "-host%d" % i
        out[name] = entry
    return out


def run(n_vms, n_hosts, vary=None):
    hv, defs = hosts(n_hosts, vary), vms(n_vms)
    t0, c0 = time.perf_counter(), time.process_time()
    result = api.placement(hv, defs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(result["cells"]) == n_vms * n_hosts
    statuses = {}
    for cell in result["cells"]:
        statuses[cell["status"]] = statuses.get(cell["status"], 0) + 1
    return wall, cpu, result["evaluations"], statuses


def main():
    print("placement: VMs x hosts, wall / CPU seconds, gate evaluations, cells per status")
    for n_vms, n_hosts in ((200, 500), (200, 1000), (200, 2000), (100, 2000)):
        wall, cpu, evals, statuses = run(n_vms, n_hosts)
        print("%4d x %5d = %7d cells: %6.2f s wall, %6.2f s CPU, %5d evaluations, %s" % (
            n_vms, n_hosts, n_vms * n_hosts, wall, cpu, evals, statuses))
    wall, cpu, evals, statuses = run(200, 2000, vary="cmdline")
    print("200 x 2000, every host's command line text unique: %.2f s wall, %.2f s CPU, %d evaluations" % (
        wall, cpu, evals))
    wall, cpu, evals, statuses = run(200, 40, vary="distinct")
    print("cold (every host distinct) 200 x 40 = 8000 cells: %.2f s wall, %.2f s CPU, %d evaluations, "
          "%.3f ms per evaluation" % (wall, cpu, evals, 1000.0 * cpu / max(evals, 1)))


if __name__ == "__main__":
    main()
