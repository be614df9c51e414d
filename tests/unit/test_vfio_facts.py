"""VFIO driver detection (vfio-pci and variant drivers, mdevs) and the VFIO_DEVICE_FEATURE facts.

Trees are built like the kernel lays them out: a variant driver has a
``vfio-dev/vfioN`` entry under the device (vfio_main.c registers one for every
VFIO device), its driver directory links to its module, and a loaded module that
uses vfio_pci_core is listed in /sys/module/vfio_pci_core/holders/.
"""
import errno
import os
import shutil
import struct
import tempfile

import pytest
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from ansible_collections.iommu.host.plugins.module_utils import iommu_uapi as uapi
from tests.support import synthetic

VTD_DATA = struct.pack("<IIQQ", 1, 0, synthetic.VTD_CAP, synthetic.VTD_ECAP)
MDEV = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
MTTY_FEATURES = {"source": "vfio:VFIO_DEVICE_FEATURE",
                 "migration": {"supported": True, "flags": {"stop_copy": True, "p2p": True, "pre_copy": True},
                               "raw": 7, "request": "GET|MIGRATION"},
                 "dma_logging": {"supported": True, "request": "PROBE|DMA_LOGGING_START"}}


def _features(mig_flags=None, dma=False):
    """What iommu_uapi.probe_features returns for a driver with these ops."""
    if mig_flags is None:
        mig = {"supported": False, "errno": errno.ENOTTY, "request": "GET|MIGRATION",
               "error": uapi.feature_error(errno.ENOTTY, None, 0x10001).as_dict()}
    else:
        mig = {"supported": bool(mig_flags & 1), "raw": mig_flags, "request": "GET|MIGRATION",
               "flags": {"stop_copy": bool(mig_flags & 1), "p2p": bool(mig_flags & 2),
                         "pre_copy": bool(mig_flags & 4)}}
    log = {"supported": True, "request": "PROBE|DMA_LOGGING_START"} if dma else {
        "supported": False, "errno": errno.ENOTTY, "request": "PROBE|DMA_LOGGING_START",
        "error": uapi.feature_error(errno.ENOTTY, None, 0x40006).as_dict()}
    return {"source": "vfio:VFIO_DEVICE_FEATURE", "migration": mig, "dma_logging": log}


class Recorder:
    """Stands in for iommu_uapi.query_device: records what was opened, answers per cdev."""

    def __init__(self, features=None, error=None):
        self.features = features or {}
        self.error = error
        self.opened = []

    def __call__(self, cdev, in_type=None, device=None, context=None):
        self.opened.append(cdev)
        if self.error:
            raise uapi.bind_error(self.error, device, context)
        return {"type_id": 1, "data": VTD_DATA, "data_len": len(VTD_DATA), "capabilities": 0x8,
                "max_pasid_log2": 0, "flags_sent": 0, "dev_id": 1,
                "features": self.features.get(os.path.basename(cdev), _features())}


class MdevRecorder:
    def __init__(self, error=None):
        self.error = error
        self.opened = []

    def __call__(self, cdev, device=None, context=None):
        self.opened.append(cdev)
        if self.error:
            raise uapi.bind_error(self.error, device, context)
        return {"dev_id": 2, "features": MTTY_FEATURES}


def _link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(os.path.relpath(target, os.path.dirname(path)), path)


def _write(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def rebind(root, addr, driver, cdev=None, module=None, holds=(), builtin=False):
    """Move a synthetic device to ``driver``; optionally give it a vfio-dev entry and a module."""
    sysd = os.path.join(root, "sys")
    ddir = os.path.realpath(os.path.join(sysd, "bus/pci/devices", addr))
    drvdir = os.path.join(sysd, "bus/pci/drivers", driver)
    os.makedirs(drvdir, exist_ok=True)
    os.unlink(os.path.join(ddir, "driver"))
    _link(os.path.join(ddir, "driver"), drvdir)
    for old in os.listdir(os.path.join(ddir)):
        if old == "vfio-dev":
            shutil.rmtree(os.path.join(ddir, "vfio-dev"))
    if cdev:
        _write(os.path.join(ddir, "vfio-dev", cdev, "dev"), "511:9\n")
        _write(os.path.join(root, "dev/vfio/devices", cdev))
    if module:
        moddir = os.path.join(sysd, "module", module)
        os.makedirs(moddir, exist_ok=True)
        if not os.path.lexists(os.path.join(drvdir, "module")):
            _link(os.path.join(drvdir, "module"), moddir)
        if not builtin:
            for core in holds:
                os.makedirs(os.path.join(sysd, "module", core, "holders"), exist_ok=True)
                hold = os.path.join(sysd, "module", core, "holders", module)
                if not os.path.lexists(hold):
                    _link(hold, moddir)
    return ddir


def add_mdev(root, parent_addr, uuid=MDEV, driver="mtty", cdev="vfio7", group="40", module="mtty"):
    sysd = os.path.join(root, "sys")
    pdir = os.path.realpath(os.path.join(sysd, "bus/pci/devices", parent_addr))
    mdir = os.path.join(pdir, uuid)
    os.makedirs(mdir)
    _link(os.path.join(sysd, "bus/mdev/devices", uuid), mdir)
    if driver:
        drvdir = os.path.join(sysd, "bus/mdev/drivers", driver)
        os.makedirs(drvdir, exist_ok=True)
        _link(os.path.join(mdir, "driver"), drvdir)
        if module:
            moddir = os.path.join(sysd, "module", module)
            os.makedirs(moddir, exist_ok=True)
            _link(os.path.join(drvdir, "module"), moddir)
    gdir = os.path.join(sysd, "kernel/iommu_groups", group)
    _write(os.path.join(gdir, "type"), "blocked\n")
    _link(os.path.join(gdir, "devices", uuid), mdir)
    _link(os.path.join(mdir, "iommu_group"), gdir)
    _write(os.path.join(root, "dev/vfio", group))
    if cdev:
        _write(os.path.join(mdir, "vfio-dev", cdev, "dev"), "511:7\n")
        _write(os.path.join(root, "dev/vfio/devices", cdev))
    return mdir


@pytest.fixture
def tree(tmp_path):
    """dev0 e1000e, dev1 vfio-pci (vfio0), dev2 mlx5_vfio_pci (variant, vfio5, module holder of
    vfio_pci_core), dev3 held by a process on vfio-pci (vfio1)."""
    root = str(tmp_path)
    addrs = synthetic.build(root, n_devices=4, n_units=1, vfio=(1, 3), holders={777: ["/dev/vfio/devices/vfio1"]})
    rebind(root, addrs[2], "mlx5_vfio_pci", cdev="vfio5", module="mlx5_vfio_pci", holds=("vfio_pci_core", "vfio"))
    return root, addrs


# ---------------------------------------------------------------------------
# Detection


def test_vfio_pci_and_variant_detected_from_the_kernel(tree):
    root, addrs = tree
    devices = sysfs.SysfsReader(root).pci_devices()
    plain = devices[addrs[1]]["vfio"]
    assert plain == {"bound": True, "driver": "vfio-pci", "variant": False, "cdev": "vfio0",
                     "detected_by": ["vfio-dev/vfio0", "driver vfio-pci"], "module": None,
                     "source": "sysfs:/sys/bus/pci/devices/%s" % addrs[1]}
    variant = devices[addrs[2]]["vfio"]
    assert variant["bound"] is True and variant["variant"] is True and variant["driver"] == "mlx5_vfio_pci"
    assert variant["cdev"] == "vfio5" and variant["module"] == "mlx5_vfio_pci"
    assert variant["detected_by"] == ["vfio-dev/vfio5", "/sys/module/vfio_pci_core/holders/mlx5_vfio_pci",
                                      "/sys/module/vfio/holders/mlx5_vfio_pci"]
    nic = devices[addrs[0]]["vfio"]
    assert nic["bound"] is False and nic["driver"] is None and nic["variant"] is False and nic["detected_by"] == []
    # the existing facts stay
    assert devices[addrs[2]]["driver"] == "mlx5_vfio_pci" and devices[addrs[2]]["vfio_cdev"] == "vfio5"


def test_variant_without_cdev_found_by_module_holder(tree):
    """A kernel without the vfio-dev entry (before 6.1): the module holding vfio_pci_core tells."""
    root, addrs = tree
    rebind(root, addrs[0], "virtio_vfio_pci", cdev=None, module="virtio_vfio_pci", holds=("vfio_pci_core",))
    vfio = sysfs.SysfsReader(root).pci_devices()[addrs[0]]["vfio"]
    assert vfio["bound"] and vfio["variant"] and vfio["cdev"] is None
    assert vfio["detected_by"] == ["/sys/module/vfio_pci_core/holders/virtio_vfio_pci"]


def test_driver_that_is_not_vfio_is_not_bound(tree):
    """A loaded module that holds nothing of VFIO's, with a name that looks like one, is no VFIO driver."""
    root, addrs = tree
    rebind(root, addrs[0], "not_vfio_pci", cdev=None, module="not_vfio_pci", holds=())
    assert sysfs.SysfsReader(root).pci_devices()[addrs[0]]["vfio"]["bound"] is False


def test_group_node_evidence_when_alone_in_group(tree):
    root, addrs = tree
    # a built-in variant driver on an old kernel: no vfio-dev, no holders/, but the group node exists
    rebind(root, addrs[0], "hisi_acc_vfio_pci", cdev=None, module="hisi_acc_vfio_pci", builtin=True)
    r = sysfs.SysfsReader(root)
    gid = r.pci_devices()[addrs[0]]["iommu_group"]
    assert r.pci_devices()[addrs[0]]["vfio"]["bound"] is False
    _write(os.path.join(root, "dev/vfio", gid))
    vfio = sysfs.SysfsReader(root).pci_devices()[addrs[0]]["vfio"]
    assert vfio["bound"] and vfio["variant"]
    assert vfio["detected_by"] == ["/dev/vfio/%s (only bound device of its IOMMU group)" % gid]


def test_group_with_variant_sibling_is_viable(tmp_path):
    root = str(tmp_path)
    addrs = synthetic.build(root, n_devices=1, bridge_groups=1)
    shared = [a for a in addrs if a.startswith("0000:81:")]
    rebind(root, shared[0], "vfio-pci", cdev="vfio3")
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    assert facts["devices"][shared[0]]["group_blockers"] == ["%s (e1000e)" % shared[1]]
    rebind(root, shared[1], "pds_vfio_pci", cdev="vfio4", module="pds_vfio_pci", holds=("vfio_pci_core",))
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    assert facts["devices"][shared[0]]["group_viable"] is True
    assert facts["devices"][shared[1]]["group_viable"] is True


# ---------------------------------------------------------------------------
# Facts: vfio_features, summary, mdevs


def test_gather_probes_features_of_every_idle_vfio_device(tree):
    root, addrs = tree
    rec = Recorder(features={"vfio5": _features(mig_flags=0x5, dma=True)})
    mrec = MdevRecorder()
    facts = iommu_facts.gather(root=root, query=rec, mdev_query=mrec)
    assert sorted(rec.opened) == ["/dev/vfio/devices/vfio0", "/dev/vfio/devices/vfio5"]
    assert facts["queried"] == [addrs[1], addrs[2]]
    plain = facts["devices"][addrs[1]]["vfio_features"]
    assert plain["source"] == "vfio:VFIO_DEVICE_FEATURE"
    assert plain["migration"]["supported"] is False and plain["migration"]["errno"] == errno.ENOTTY
    assert plain["dma_logging"]["supported"] is False
    variant = facts["devices"][addrs[2]]["vfio_features"]
    assert variant["migration"]["flags"] == {"stop_copy": True, "p2p": False, "pre_copy": True}
    assert variant["dma_logging"]["supported"] is True
    assert "vfio_features" not in facts["devices"][addrs[1]]["hw_info"]
    # held device: hw_info and vfio_features say skipped, the same way
    busy = facts["devices"][addrs[3]]
    assert busy["vfio_features"] == {"source": "none", "skipped": busy["hw_info"]["skipped"]}
    assert "777 (qemu-system-x86)" in busy["vfio_features"]["skipped"]
    # not on VFIO: neither
    assert "vfio_features" not in facts["devices"][addrs[0]] and "hw_info" not in facts["devices"][addrs[0]]
    s = facts["summary"]
    assert s["vfio_pci_devices"] == [addrs[1], addrs[3]]
    assert s["vfio_devices"] == [addrs[1], addrs[2], addrs[3]]


def test_sysfs_only_and_selection_open_nothing(tree):
    root, addrs = tree
    add_mdev(root, addrs[0])
    rec, mrec = Recorder(), MdevRecorder()
    facts = iommu_facts.gather(root=root, sysfs_only=True, query=rec, mdev_query=mrec)
    assert rec.opened == [] and mrec.opened == [] and facts["queried_mdevs"] == []
    for addr in (addrs[1], addrs[2]):
        dev = facts["devices"][addr]
        assert dev["vfio_features"] == {"source": "none", "skipped": dev["hw_info"]["skipped"]}
        assert dev["vfio_features"]["skipped"].startswith("sysfs_only")
    assert facts["mdevs"][MDEV]["vfio_features"]["skipped"].startswith("sysfs_only")
    facts = iommu_facts.gather(root=root, selected={addrs[2]}, query=rec, mdev_query=mrec)
    assert rec.opened == ["/dev/vfio/devices/vfio5"] and mrec.opened == []
    assert "vfio_features" not in facts["devices"][addrs[1]]
    assert "vfio_features" not in facts["mdevs"][MDEV]


def test_bind_failure_gives_features_not_read(tree):
    root, addrs = tree
    facts = iommu_facts.gather(root=root, query=Recorder(error=errno.EPERM), mdev_query=MdevRecorder())
    f = facts["devices"][addrs[1]]["vfio_features"]
    assert f["source"] == "none" and f["error"]["code"] == "no_interrupt_remapping"
    assert facts["devices"][addrs[1]]["hw_info"]["error"]["code"] == "no_interrupt_remapping"
    assert f["skipped"].startswith("not opened: VFIO_DEVICE_BIND_IOMMUFD failed")


def test_hw_info_failure_keeps_the_features(tree):
    root, addrs = tree

    def query(cdev, in_type=None, device=None, context=None):
        e = uapi.hw_info_error(errno.EOPNOTSUPP, device)
        e.features = _features(mig_flags=1)
        raise e
    facts = iommu_facts.gather(root=root, query=query, mdev_query=MdevRecorder())
    dev = facts["devices"][addrs[1]]
    assert dev["hw_info"]["error"]["code"] == "no_hw_info"
    assert dev["vfio_features"]["migration"]["supported"] is True


def test_mdev_vfio_and_features(tree):
    root, addrs = tree
    add_mdev(root, addrs[0])
    mrec = MdevRecorder()
    facts = iommu_facts.gather(root=root, query=Recorder(), mdev_query=mrec)
    m = facts["mdevs"][MDEV]
    assert mrec.opened == ["/dev/vfio/devices/vfio7"] and facts["queried_mdevs"] == [MDEV]
    assert m["vfio"]["bound"] is True and m["vfio"]["variant"] is False and m["vfio"]["driver"] == "mtty"
    assert m["vfio"]["cdev"] == "vfio7" and m["vfio"]["detected_by"] == ["vfio-dev/vfio7"]
    assert m["vfio"]["source"] == "sysfs:/sys/bus/mdev/devices/%s" % MDEV
    assert m["vfio_features"] == MTTY_FEATURES
    assert m["hw_info"]["source"] == "none" and "no IOMMU of its own" in m["hw_info"]["skipped"]
    assert m["has_iommu"] is False and m["in_use_by"] == []
    assert facts["findings"] == []
    # an mdev is not a PCI device: the PCI lists do not grow
    assert MDEV not in facts["summary"]["vfio_devices"]


def test_mdev_in_use_is_never_opened(tree):
    root, addrs = tree
    add_mdev(root, addrs[0])
    fd_dir = os.path.join(root, "proc/555/fd")
    os.makedirs(fd_dir)
    _write(os.path.join(root, "proc/555/comm"), "qemu-system-x86\n")
    os.symlink("/dev/vfio/40", os.path.join(fd_dir, "9"))
    mrec = MdevRecorder()
    facts = iommu_facts.gather(root=root, query=Recorder(), mdev_query=mrec)
    assert mrec.opened == []
    m = facts["mdevs"][MDEV]
    assert m["in_use_by"] == ["555 (qemu-system-x86)"]
    assert m["vfio_features"]["source"] == "none" and "555 (qemu-system-x86)" in m["vfio_features"]["skipped"]


def test_mdev_without_cdev_found_by_group_node(tree):
    root, addrs = tree
    add_mdev(root, addrs[0], cdev=None)
    facts = iommu_facts.gather(root=root, query=Recorder(), mdev_query=MdevRecorder())
    m = facts["mdevs"][MDEV]
    assert m["vfio"]["bound"] is True and m["vfio"]["cdev"] is None
    assert m["vfio"]["detected_by"] == ["/dev/vfio/40 (only bound device of its IOMMU group)"]
    assert "vfio_features" not in m   # no cdev: nothing to open


def test_mdev_bind_failure_is_a_finding(tree):
    root, addrs = tree
    add_mdev(root, addrs[0])
    facts = iommu_facts.gather(root=root, query=Recorder(), mdev_query=MdevRecorder(error=errno.EBUSY))
    m = facts["mdevs"][MDEV]
    assert m["vfio_features"]["source"] == "none" and m["vfio_features"]["error"]["code"] == "in_use"
    assert any(f["device"] == MDEV and f["code"] == "in_use" for f in facts["findings"])


def test_query_named_features_for_pci_and_mdev(tree):
    root, addrs = tree
    add_mdev(root, addrs[0])
    rec, mrec = Recorder(features={"vfio5": _features(mig_flags=7, dma=True)}), MdevRecorder()
    results, failures = iommu_facts.query_named([addrs[2], MDEV], root=root, query=rec, mdev_query=mrec)
    assert failures == []
    assert results[addrs[2]]["vfio_features"]["migration"]["raw"] == 7
    assert results[addrs[2]]["vfio"]["variant"] is True
    assert results[MDEV]["vfio_features"] == MTTY_FEATURES and results[MDEV]["has_iommu"] is False
    assert "no IOMMU of its own" in results[MDEV]["hw_info_skipped"]
    rec2, mrec2 = Recorder(), MdevRecorder()
    results, failures = iommu_facts.query_named([addrs[2], MDEV], root=root, check_mode=True,
                                                query=rec2, mdev_query=mrec2)
    assert rec2.opened == [] and mrec2.opened == [] and failures == []
    assert results[addrs[2]]["vfio_features"]["skipped"].startswith("check mode")
    assert results[MDEV]["vfio_features"]["skipped"].startswith("check mode")


def test_query_named_refuses_non_vfio_with_clear_message(tree):
    root, addrs = tree
    results, failures = iommu_facts.query_named([addrs[0]], root=root, query=Recorder())
    assert results == {} and failures[0]["code"] == "not_vfio_pci"
    assert "not to a VFIO driver" in failures[0]["message"] and "e1000e" in failures[0]["message"]


# ---------------------------------------------------------------------------
# Properties


_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.:", min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(driver=st.one_of(st.none(), st.just("vfio-pci"), _NAMES),
       vfio_dev=st.lists(st.one_of(_NAMES, st.from_regex(r"\Avfio[0-9]{1,3}\Z")), max_size=3),
       module=st.one_of(st.none(), _NAMES),
       holds=st.lists(st.sampled_from(sysfs.VFIO_CORE_MODULES), max_size=2, unique=True),
       node=st.one_of(st.none(), st.just("/dev/vfio/3")))
def test_vfio_binding_properties(driver, vfio_dev, module, holds, node):
    b = sysfs.vfio_binding(driver, vfio_dev, module, holds, group_node=node, source="s")
    assert set(b) == {"bound", "driver", "variant", "cdev", "detected_by", "module", "source"}
    assert b["bound"] == bool(b["detected_by"])
    assert not b["variant"] or (b["bound"] and b["driver"] not in (None, "vfio-pci"))
    assert b["cdev"] is None or (b["cdev"] in vfio_dev and b["cdev"].startswith("vfio"))
    assert b["driver"] in (None, driver)
    # each kind of evidence only from its own input
    if not [v for v in vfio_dev if v.startswith("vfio")] and driver != "vfio-pci" and \
            not (driver and module and holds) and not (driver and node):
        assert b["bound"] is False
    if driver == "vfio-pci":
        assert b["bound"] and not b["variant"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(driver=_NAMES.filter(lambda d: d not in (".", "..")), cdev=st.booleans(),
       holds=st.lists(st.sampled_from(sysfs.VFIO_CORE_MODULES), max_size=2, unique=True),
       builtin=st.booleans())
def test_reader_matches_the_model(driver, cdev, holds, builtin):
    """The reader on a tree = vfio_binding on the same facts; never an error on any name."""
    root = tempfile.mkdtemp()
    try:
        addrs = synthetic.build(root, n_devices=1, vfio=())
        rebind(root, addrs[0], driver, cdev="vfio2" if cdev else None, module=driver.replace("-", "_"),
               holds=holds, builtin=builtin)
        r = sysfs.SysfsReader(root)
        got = r.pci_devices()[addrs[0]]["vfio"]
        assert r.errors == []
        want = sysfs.vfio_binding(driver, ["vfio2"] if cdev else [], driver.replace("-", "_"),
                                  [] if builtin else holds, source="sysfs:/sys/bus/pci/devices/%s" % addrs[0])
        assert got == want
    finally:
        shutil.rmtree(root)
