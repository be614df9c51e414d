"""VFIO driver detection and the VFIO_DEVICE_FEATURE probes on the real kernel (issue 8 section 1).

The test-bed kernel has the mtty sample driver built in (CONFIG_SAMPLE_VFIO_MDEV_MTTY=y):
samples/vfio-mdev/mtty.c registers every mtty mdev with
``migration_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY``,
``mig_ops`` and ``log_ops``, so the kernel answers GET|MIGRATION with flags 0x7 and
PROBE|DMA_LOGGING_START with success. A plain vfio-pci device (the e1000e) has neither
ops: both requests get ENOTTY (drivers/vfio/vfio_main.c), which QEMU turns into
"VFIO migration is not supported in kernel".
"""
import errno
import json
import os
import uuid as uuidlib

import pytest

from guestops import NIC, bind_vfio
from test_facts_testbed import gather, push_module_utils, resets

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MTTY_TYPES = "/sys/devices/virtual/mtty/mtty/mdev_supported_types"


def create_mtty(guest):
    """Create an mtty mdev (echo UUID > .../create); returns (uuid, its vfio-dev name)."""
    types = guest.run("ls %s" % MTTY_TYPES, timeout=60, check=True).stdout.split()
    assert types, "no mtty mdev types: is CONFIG_SAMPLE_VFIO_MDEV_MTTY in the test-bed kernel?"
    mtype = "mtty-2" if "mtty-2" in types else types[0]
    uuid = str(uuidlib.uuid4())
    guest.run("echo %s > %s/%s/create" % (uuid, MTTY_TYPES, mtype), timeout=60, check=True)
    cdev = guest.run("ls /sys/bus/mdev/devices/%s/vfio-dev" % uuid, timeout=60, check=True).stdout.strip()
    assert cdev.startswith("vfio"), cdev
    return uuid, cdev, mtype


def remove_mdev(guest, uuid):
    guest.run("echo 1 > /sys/bus/mdev/devices/%s/remove" % uuid, timeout=60)


@pytest.fixture
def mtty(testbed):
    guest = testbed["intel"]
    uuid, cdev, mtype = create_mtty(guest)
    try:
        yield guest, uuid, cdev, mtype
    finally:
        remove_mdev(guest, uuid)


@pytest.mark.testbed("intel")
def test_mtty_migration_flags_and_vfio_pci_blocker_facts(mtty, ansible_playbook):
    guest, uuid, cdev, mtype = mtty
    bind_vfio(guest)
    before = resets(guest)
    facts = gather(ansible_playbook, "intel")

    # the mdev: bound to its VFIO driver (mtty), read through its cdev
    m = facts["mdevs"][uuid]
    assert m["mdev_type"] == mtype and m["has_iommu"] is False
    assert m["vfio"]["bound"] is True and m["vfio"]["driver"] == "mtty" and m["vfio"]["variant"] is False
    assert m["vfio"]["cdev"] == cdev and "vfio-dev/%s" % cdev in m["vfio"]["detected_by"]
    assert m["vfio"]["source"] == "sysfs:/sys/bus/mdev/devices/%s" % uuid
    f = m["vfio_features"]
    assert f["source"] == "vfio:VFIO_DEVICE_FEATURE"
    # what the kernel answers for mtty: STOP_COPY | P2P | PRE_COPY (samples/vfio-mdev/mtty.c)
    assert f["migration"]["raw"] == 0x7
    assert f["migration"]["flags"] == {"stop_copy": True, "p2p": True, "pre_copy": True}
    assert f["migration"]["supported"] is True and f["migration"]["request"] == "GET|MIGRATION"
    assert f["dma_logging"] == {"supported": True, "request": "PROBE|DMA_LOGGING_START"}
    assert m["hw_info"]["source"] == "none" and "no IOMMU of its own" in m["hw_info"]["skipped"]
    assert uuid in facts["queried_mdevs"]

    # the e1000e on plain vfio-pci: no migration uAPI (QEMU's blocker), no device dirty tracking
    dev = facts["devices"][NIC]
    assert dev["vfio"]["bound"] is True and dev["vfio"]["driver"] == "vfio-pci" and dev["vfio"]["variant"] is False
    assert dev["vfio"]["detected_by"][0].startswith("vfio-dev/vfio")
    mig = dev["vfio_features"]["migration"]
    assert mig["supported"] is False and mig["errno"] == errno.ENOTTY
    assert mig["error"]["code"] == "feature_not_supported"
    assert "VFIO migration is not supported in kernel" in mig["error"]["message"]
    log = dev["vfio_features"]["dma_logging"]
    assert log["supported"] is False and log["errno"] == errno.ENOTTY
    assert NIC in facts["queried"] and resets(guest) > before
    assert facts["summary"]["vfio_devices"] == [NIC] == facts["summary"]["vfio_pci_devices"]
    # devices on other drivers are not VFIO devices, and nothing about them was opened
    other = facts["devices"]["0000:00:08.0"]
    assert other["vfio"]["bound"] is False and "vfio_features" not in other

    os.makedirs(os.path.join(REPO, "build"), exist_ok=True)
    with open(os.path.join(REPO, "build", "testbed-facts-vfio.json"), "w") as out:
        json.dump({"mdev": {uuid: m}, "device": {NIC: dev}, "summary": facts["summary"]}, out, indent=1,
                  sort_keys=True)


@pytest.mark.testbed("intel")
def test_mtty_raw_ioctl(mtty):
    """The same answer from iommu_uapi called directly in the guest: the ioctl itself, no Ansible."""
    guest, uuid, cdev, _mtype = mtty
    push_module_utils(guest, "/root/iommu-host")
    script = r"""
import json, sys
sys.path.insert(0, "/root/iommu-host")
from ansible_collections.iommu.host.plugins.module_utils import iommu_uapi as u
info = u.query_features("/dev/vfio/devices/%s", device="%s")
print(json.dumps(info))
""" % (cdev, uuid)
    res = guest.run(["python3", "-c", script], timeout=120)
    assert res.rc == 0, res
    info = json.loads(res.stdout)
    assert info["features"]["migration"]["raw"] == 7
    assert info["features"]["dma_logging"]["supported"] is True


@pytest.mark.testbed("intel")
def test_mdev_in_use_and_check_mode_open_nothing(mtty, ansible_playbook):
    guest, uuid, cdev, _mtype = mtty
    result = ansible_playbook({"hosts": "intel", "gather_facts": False,
                               "tasks": [{"name": "gather", "iommu.host.iommu_facts": {}}]}, args=["--check"])
    assert result.rc == 0, result
    m = result.result("intel", "gather")["ansible_facts"]["iommu"]["mdevs"][uuid]
    assert m["vfio_features"] == {"source": "none", "skipped": "sysfs_only: device not opened"}
    holder = guest.run(
        "nohup python3 -c 'import os, time; fd = os.open(\"/dev/vfio/devices/%s\", os.O_RDWR); "
        "time.sleep(600)' >/dev/null 2>&1 & echo $!" % cdev, timeout=60, check=True).stdout.strip()
    try:
        guest.run("sleep 2", timeout=30)
        facts = gather(ansible_playbook, "intel")
        m = facts["mdevs"][uuid]
        assert m["in_use_by"] == ["%s (python3)" % holder]
        assert m["vfio_features"]["source"] == "none" and holder in m["vfio_features"]["skipped"]
        assert uuid not in facts["queried_mdevs"]
    finally:
        guest.run("kill %s" % holder, timeout=30)


@pytest.mark.testbed("intel")
def test_hw_info_module_reports_features(mtty, ansible_playbook):
    guest, uuid, _cdev, _mtype = mtty
    bind_vfio(guest)
    play = {"hosts": "intel", "gather_facts": False, "tasks": [
        {"name": "query", "iommu.host.iommu_hw_info": {"devices": [NIC, uuid]}}]}
    result = ansible_playbook(play)
    assert result.rc == 0, result
    out = result.result("intel", "query")
    assert out["failures"] == []
    assert out["devices"][NIC]["type"] == "intel_vtd"
    assert out["devices"][NIC]["vfio_features"]["migration"]["errno"] == errno.ENOTTY
    assert out["devices"][NIC]["vfio"]["driver"] == "vfio-pci"
    mdev = out["devices"][uuid]
    assert mdev["has_iommu"] is False and "no IOMMU of its own" in mdev["hw_info_skipped"]
    assert mdev["vfio_features"]["migration"]["flags"] == {"stop_copy": True, "p2p": True, "pre_copy": True}


@pytest.mark.testbed("intel")
def test_vfio_pci_module_refuses_a_driver_that_is_not_vfio(testbed, ansible_playbook):
    """driver: names a loaded driver the kernel shows is no VFIO driver -> refused, device untouched.

    On the test bed every driver is built in (no /sys/module/*/holders), so the refusal
    that can be told here is the unknown name: modprobe fails and nothing is bound.
    """
    guest = testbed["intel"]
    other = "0000:00:08.0"
    play = {"hosts": "intel", "gather_facts": False, "tasks": [
        {"name": "bind", "iommu.host.vfio_pci": {"devices": [other], "driver": "no_such_vfio_pci",
                                                 "persistent": False},
         "ignore_errors": True}]}
    out = ansible_playbook(play).result("intel", "bind")
    assert out["failed"] is True and "no_such_vfio_pci" in out["msg"]
    drv = guest.run("basename $(readlink /sys/bus/pci/devices/%s/driver)" % other, timeout=60,
                    check=True).stdout.strip()
    assert drv == "e1000e"
    override = guest.run("cat /sys/bus/pci/devices/%s/driver_override" % other, timeout=60,
                         check=True).stdout.strip()
    assert override == "(null)"
