"""Facts assembly over synthetic trees, with the iommufd query injected."""
import os
import struct

import pytest

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils import iommu_uapi as uapi
from tests.support import synthetic

VTD_DATA = struct.pack("<IIQQ", 1, 0, synthetic.VTD_CAP, synthetic.VTD_ECAP)


class Recorder:
    def __init__(self, data=VTD_DATA, type_id=1, caps=0x8, error=None):
        self.data, self.type_id, self.caps, self.error = data, type_id, caps, error
        self.opened = []

    def __call__(self, cdev, in_type=None, device=None, context=None):
        self.opened.append(cdev)
        self.context = context
        if self.error:
            raise uapi.bind_error(self.error, device, context)
        return {"type_id": self.type_id, "data": self.data, "data_len": len(self.data),
                "capabilities": self.caps, "max_pasid_log2": 0, "flags_sent": 0, "dev_id": 1}


@pytest.fixture
def tree(tmp_path):
    root = str(tmp_path)
    addrs = synthetic.build(root, n_devices=4, n_units=1, vfio=(1, 2), bridge_groups=1,
                            holders={777: ["/dev/vfio/devices/vfio1"]})
    return root, addrs


def test_gather_queries_idle_vfio_devices_only(tree):
    root, addrs = tree
    rec = Recorder()
    facts = iommu_facts.gather(root=root, query=rec)
    assert rec.opened == ["/dev/vfio/devices/vfio0"]          # vfio1 is held by pid 777
    assert facts["queried"] == [addrs[1]]
    hw = facts["devices"][addrs[1]]["hw_info"]
    assert hw["source"] == "iommufd" and hw["type"] == "intel_vtd" and hw["device_reset"] is True
    assert hw["capabilities"]["ats_not_supported"] is True and hw["capabilities"]["dirty_tracking"] is False
    assert hw["vendor"]["cap"]["mgaw"] == 39
    assert hw["consistent_with_sysfs"] == {"equal": True, "mismatches": []}
    busy = facts["devices"][addrs[2]]
    assert busy["in_use_by"] == ["777 (qemu-system-x86)"]
    assert busy["hw_info"]["source"] == "none" and "777 (qemu-system-x86)" in busy["hw_info"]["skipped"]
    unit = facts["units"]["dmar0"]
    assert unit["source"] == "sysfs:/sys/class/iommu/dmar0"
    assert unit["decoded"]["cap"]["mgaw"] == 39
    assert unit["iommufd"]["via"] == addrs[1]
    assert facts["present"] is True and facts["vendors"] == ["intel_vtd"]
    assert facts["kernel"]["iommufd"]["available"] is True
    assert facts["kernel"]["interrupt_remapping"]["enabled"] is True


def test_sysfs_only_opens_nothing(tree):
    root, addrs = tree
    rec = Recorder()
    facts = iommu_facts.gather(root=root, sysfs_only=True, query=rec)
    assert rec.opened == [] and facts["queried"] == [] and facts["mode"] == "sysfs_only"
    assert facts["devices"][addrs[1]]["hw_info"]["skipped"].startswith("sysfs_only")


def test_selected_devices(tree):
    root, addrs = tree
    rec = Recorder()
    iommu_facts.gather(root=root, query=rec, selected={addrs[0]})
    assert rec.opened == []


def test_mismatch_is_reported(tree):
    root, addrs = tree
    other = struct.pack("<IIQQ", 1, 0, synthetic.VTD_CAP ^ 1, synthetic.VTD_ECAP)
    facts = iommu_facts.gather(root=root, query=Recorder(data=other))
    assert facts["devices"][addrs[1]]["hw_info"]["consistent_with_sysfs"] == {"equal": False, "mismatches": ["cap"]}


def test_bind_failure_becomes_finding_with_remedy(tmp_path):
    root = str(tmp_path)
    addrs = synthetic.build(root, vendor="amd", vfio=(0,), interrupt_remapping=False)
    import errno
    facts = iommu_facts.gather(root=root, query=Recorder(error=errno.EPERM))
    hw = facts["devices"][addrs[0]]["hw_info"]
    assert hw["error"]["code"] == "no_interrupt_remapping"
    assert "interrupt remapping is not enabled" in hw["error"]["message"]
    assert facts["findings"][0]["device"] == addrs[0]
    # the AMD EFR is still decoded from sysfs
    assert facts["units"]["ivhd0"]["decoded"]["efr"]["hdsup"] is False
    assert facts["units"]["ivhd0"]["decoded"]["names"] == ["PreF", "PPR", "GT", "IA", "GA", "HE"]


def test_group_viability_in_facts(tree):
    root, addrs = tree
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    shared = [a for a in addrs if a.startswith("0000:81:")]
    dev = facts["devices"][shared[0]]
    assert dev["group_viable"] is False
    assert dev["group_blockers"] == ["%s (e1000e)" % shared[1]]
    assert facts["devices"][addrs[0]]["group_viable"] is True


def test_host_without_iommu(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "proc"))
    with open(os.path.join(root, "proc/cmdline"), "w") as f:
        f.write("ro quiet\n")
    facts = iommu_facts.gather(root=root)
    assert facts["present"] is False and facts["units"] == {} and facts["queried"] == []
    assert facts["findings"] == []
    assert facts["kernel"]["iommufd"]["available"] is False


def test_mdev_reported_without_iommu(tree):
    root, _addrs = tree
    mdir = os.path.join(root, "sys/devices/pci0000:00/0000:01:00.0/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001")
    os.makedirs(mdir)
    os.makedirs(os.path.join(root, "sys/bus/mdev/devices"), exist_ok=True)
    os.symlink(os.path.relpath(mdir, os.path.join(root, "sys/bus/mdev/devices")),
               os.path.join(root, "sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"))
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    m = facts["mdevs"]["83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"]
    assert m["has_iommu"] is False and m["parent"] == "0000:01:00.0"
    results, failures = iommu_facts.query_named(["83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"], root=root)
    assert failures == [] and results["83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"]["has_iommu"] is False


def test_query_named_resolution_and_refusals(tree):
    root, addrs = tree
    rec = Recorder()
    short = addrs[1][5:]
    results, failures = iommu_facts.query_named(
        [short, "/dev/vfio/devices/vfio0", "/sys/bus/pci/devices/" + addrs[1], addrs[0], addrs[2],
         "0000:ff:00.0", "nonsense"], root=root, query=rec)
    assert list(results) == [addrs[1]]
    codes = {f["device"]: f["code"] for f in failures}
    assert codes[addrs[0]] == "not_vfio_pci"
    assert codes[addrs[2]] == "in_use"
    assert codes["0000:ff:00.0"] == "not_found" and codes["nonsense"] == "not_found"
    assert len(rec.opened) == 3  # the same device named three ways, each query real


def test_query_named_check_mode_opens_nothing(tree):
    root, addrs = tree
    rec = Recorder()
    results, failures = iommu_facts.query_named([addrs[1]], check_mode=True, root=root, query=rec)
    assert rec.opened == [] and failures == []
    assert results[addrs[1]]["skipped"].startswith("check mode")
