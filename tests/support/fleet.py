"""Fleets of hosts for the fleet filters' tests and benchmark: facts gathered from the captured
test-bed trees (tests/fixtures/sysfs), plus varied copies of them."""

import copy
import functools

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils.fleet.capabilities import capabilities
from tests.support import fixture_trees

PROFILES = ("intel", "intel-vfio", "intel-sm", "intel-sm-vfio", "amd", "amd-vfio", "none")
VFIO = "0000:00:09.0"   # the e1000e the -vfio captures bound to vfio-pci


@functools.lru_cache(maxsize=None)
def _facts(profile):
    return iommu_facts.gather(root=fixture_trees.root(profile), sysfs_only=True)


def facts(profile):
    """A fresh copy of the facts gathered from a captured tree."""
    return copy.deepcopy(_facts(profile))


def _no_ir(f):
    f["kernel"]["interrupt_remapping"]["enabled"] = False
    f["kernel"]["interrupt_remapping"]["evidence"] = ["IO-APIC"]


def _in_use(f):
    if VFIO in f["devices"]:
        f["devices"][VFIO]["in_use_by"] = ["qemu-system-x86 (pid 4242)"]


def _no_iommufd(f):
    f["kernel"]["iommufd"]["available"] = False
    f["kernel"]["iommufd"]["config"] = "n"


def _iommu_off(f):
    f["cmdline"]["effects"]["iommu_off"] = True


def _dirty(f):
    """The VFIO device's IOMMU reports dirty tracking (an iommufd answer, as on newer hardware)."""
    if VFIO in f["devices"]:
        f["devices"][VFIO]["hw_info"] = {"source": "iommufd", "type": f["vendors"][0] if f["vendors"] else "none",
                                         "capabilities": {"dirty_tracking": True, "max_pasid_log2": 20,
                                                          "reported_by_kernel": {"dirty_tracking": True}}}


VARIANTS = {"as_captured": None, "no_interrupt_remapping": _no_ir, "device_in_use": _in_use,
            "no_iommufd": _no_iommufd, "iommu_off": _iommu_off, "dirty_tracking": _dirty}


def host_facts(profile, variant="as_captured"):
    f = facts(profile)
    if VARIANTS[variant]:
        VARIANTS[variant](f)
        f["capabilities"] = capabilities(f)
    return f


def fleet(n, profiles=PROFILES, variants=tuple(VARIANTS), wrap=True):
    """n hosts hv0000.. cycling over profiles x variants; hostvars-like ({host: {ansible_facts: {iommu}}})."""
    combos = [(p, v) for v in variants for p in profiles]
    cache = {}
    out = {}
    for i in range(n):
        combo = combos[i % len(combos)]
        if combo not in cache:
            cache[combo] = host_facts(*combo)
        iommu = cache[combo]
        out["hv%04d" % i] = {"ansible_facts": {"iommu": iommu}} if wrap else iommu
    return out
