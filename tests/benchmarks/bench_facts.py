"""Benchmark: facts gathering over synthetic sysfs trees (not a test; run with `make bench`).

Builds trees of 250 .. 4000 PCI devices over 64 IOMMU units (the issue's
reference point is 2,000 devices / 64 units), then times what the
iommu.host.iommu_facts module does on a host: gather() in sysfs-only mode
plus the JSON encoding of the result that AnsibleModule.exit_json performs.
Reports the median of several runs per size and the growth per device, and
writes the table to build/bench_facts.json.
"""
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "build", "collections"))

from tests.support import synthetic  # noqa: E402
from ansible_collections.iommu.host.plugins.module_utils import iommu_facts  # noqa: E402

SIZES = (250, 500, 1000, 2000, 4000)
UNITS = 64
RUNS = 11


def measure(root):
    """Wall-clock and CPU (user+system of this process) seconds per run.

    CPU time is what the gathering itself costs; it moves little when other
    processes load the machine, while wall time does.
    """
    wall, cpu = [], []
    for _run in range(RUNS):
        t0, c0 = time.perf_counter(), time.process_time()
        facts = iommu_facts.gather(root=root, sysfs_only=True)
        json.dumps({"ansible_facts": {"iommu": facts}})
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), min(wall), statistics.median(cpu), facts


def main():
    base = tempfile.mkdtemp(prefix="iommu-bench-")
    rows = []
    try:
        for n in SIZES:
            root = os.path.join(base, str(n))
            synthetic.build(root, n_devices=n, n_units=UNITS, vfio=range(0, n, 10))
            median, best, cpu, facts = measure(root)
            assert len(facts["devices"]) == n and facts["summary"]["units"] == UNITS
            rows.append({"devices": n, "units": UNITS, "median_ms": round(median * 1000, 1),
                         "best_ms": round(best * 1000, 1), "cpu_ms": round(cpu * 1000, 1),
                         "us_per_device": round(cpu * 1e6 / n, 1)})
            print("%5d devices, %d units: wall median %7.1f ms  best %7.1f ms  cpu %7.1f ms  %6.1f us/device"
                  % (n, UNITS, median * 1000, best * 1000, cpu * 1000, cpu * 1e6 / n))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    first, last = rows[0], rows[-1]
    growth = (last["cpu_ms"] / first["cpu_ms"]) / (last["devices"] / first["devices"])
    print("growth (cpu): x%.1f time for x%d devices; ratio %.2f (1.0 = linear)" % (
        last["cpu_ms"] / first["cpu_ms"], last["devices"] // first["devices"], growth))
    ref = [r for r in rows if r["devices"] == 2000][0]
    print("reference (2000 devices, 64 units): wall median %.1f ms, best %.1f ms, cpu %.1f ms (target < 150 ms)"
          % (ref["median_ms"], ref["best_ms"], ref["cpu_ms"]))
    print("load average during the run: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    os.makedirs(os.path.join(REPO, "build"), exist_ok=True)
    with open(os.path.join(REPO, "build", "bench_facts.json"), "w") as f:
        json.dump({"rows": rows, "linearity": growth, "python": sys.version.split()[0],
                   "cpus": os.cpu_count()}, f, indent=1)


if __name__ == "__main__":
    main()
