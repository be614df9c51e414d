"""iommu.host.sriov_vfs: planning, refusals, errno messages, persistence, the kernel's write rules.

The tree is shaped like the test bed's ``intel-igb`` guest (an igb PF at 03:00.0 behind the root port
00:0b.0, 7 VFs at most, First VF Offset 128, VF Stride 2). FakeKernel plays drivers/pci/iov.c
sriov_numvfs_store: ERANGE above sriov_totalvfs, ENOENT without a PF driver, EBUSY when a non-zero
count changes to another non-zero count, VF devices created and removed.
"""
import errno
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils import iommu_sriov as sriov
from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from ansible_collections.iommu.host.plugins.module_utils import iommu_vfio as vfio

PF = "0000:03:00.0"
PORT = "0000:00:0b.0"
RULES = sriov.DEFAULT_RULES_FILE


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(os.path.relpath(target, os.path.dirname(path)), path)


def _device(root, parent_dir, addr, vendor, device, cls, driver=None, group=None):
    d = os.path.join(parent_dir, addr)
    for name, value in (("vendor", vendor), ("device", device), ("class", cls),
                        ("subsystem_vendor", "0x1af4"), ("subsystem_device", "0x1100")):
        _write(os.path.join(d, name), value + "\n")
    _write(os.path.join(d, "uevent"), "PCI_CLASS=%s\nPCI_ID=%s:%s\nPCI_SUBSYS_ID=1AF4:1100\n"
           % (cls[2:].upper(), vendor[2:].upper(), device[2:].upper()))
    _write(os.path.join(d, "driver_override"), "(null)\n")
    _link(os.path.join(root, "sys/bus/pci/devices", addr), d)
    if driver:
        _link(os.path.join(d, "driver"), os.path.join(root, "sys/bus/pci/drivers", driver))
    if group is not None:
        g = os.path.join(root, "sys/kernel/iommu_groups", str(group))
        os.makedirs(os.path.join(g, "devices"), exist_ok=True)
        _write(os.path.join(g, "type"), "DMA\n")
        _link(os.path.join(g, "devices", addr), d)
        _link(os.path.join(d, "iommu_group"), g)
    return d


def build(root, numvfs=0, autoprobe=True, pf_driver="igb"):
    for drv in ("igb", "igbvf", "vfio-pci", "pcieport"):
        os.makedirs(os.path.join(root, "sys/bus/pci/drivers", drv), exist_ok=True)
    _write(os.path.join(root, "proc/mounts"), "proc /proc proc rw 0 0\n")
    _write(os.path.join(root, "proc/cmdline"), "intel_iommu=on\n")
    top = os.path.join(root, "sys/devices/pci0000:00")
    port = _device(root, top, PORT, "0x1b36", "0x000c", "0x060400", "pcieport", group=8)
    pf = _device(root, port, PF, "0x8086", "0x10c9", "0x020000", pf_driver, group=11)
    for name, value in (("sriov_totalvfs", "7"), ("sriov_numvfs", "0"), ("sriov_offset", "128"),
                        ("sriov_stride", "2"), ("sriov_vf_device", "10ca"),
                        ("sriov_drivers_autoprobe", "1" if autoprobe else "0")):
        _write(os.path.join(pf, name), value + "\n")
    _write(os.path.join(pf, "net/eth5/flags"), "0x1002\n")
    _link(os.path.join(pf, "net/eth5/device"), pf)
    _link(os.path.join(root, "sys/class/net/eth5"), os.path.join(pf, "net/eth5"))
    kernel = FakeKernel(root)
    if numvfs:
        assert kernel.write_attr_checked("/sys/bus/pci/devices/%s/sriov_numvfs" % PF, str(numvfs)) == (None, None)
    return kernel


class FakeKernel(sriov.SysfsWriter):
    """drivers/pci/iov.c as far as sriov_numvfs / sriov_drivers_autoprobe go."""

    def __init__(self, root, fail=None):
        super(FakeKernel, self).__init__(root)
        self.fail = fail or {}          # {attr: errno} forced on write
        self.writes = []

    def _pf_dir(self):
        return os.path.realpath(self.path("/sys/bus/pci/devices/%s" % PF))

    def vf_addresses(self, n):
        return sriov.predict_vfs(PF, {"offset": 128, "stride": 2}, n)

    def write_attr_checked(self, rel, text):
        path = self.path(rel)
        if not os.path.exists(path):
            return "open", OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        attr = os.path.basename(rel)
        self.writes.append((attr, text))
        if attr in self.fail:
            return "write", OSError(self.fail[attr], os.strerror(self.fail[attr]))
        pf = self._pf_dir()
        if attr == "sriov_drivers_autoprobe":
            if text.strip() not in ("0", "1"):
                return "write", OSError(errno.EINVAL, "")
            _write(path, text.strip() + "\n")
            return None, None
        if attr != "sriov_numvfs":
            _write(path, text)
            return None, None
        try:
            n = int(text.strip())
        except ValueError:
            return "write", OSError(errno.EINVAL, "")
        total = int(open(os.path.join(pf, "sriov_totalvfs")).read())
        cur = int(open(os.path.join(pf, "sriov_numvfs")).read())
        if n > total:
            return "write", OSError(errno.ERANGE, "")
        if n == cur:
            return None, None
        if not os.path.lexists(os.path.join(pf, "driver")):
            return "write", OSError(errno.ENOENT, "")
        if n and cur:
            return "write", OSError(errno.EBUSY, "")
        if n == 0:
            for i in range(cur):
                vf = os.readlink(os.path.join(pf, "virtfn%d" % i))
                addr = os.path.basename(vf)
                shutil.rmtree(os.path.join(os.path.dirname(pf), addr))
                os.unlink(os.path.join(pf, "virtfn%d" % i))
                os.unlink(self.path("/sys/bus/pci/devices/%s" % addr))
                shutil.rmtree(self.path("/sys/kernel/iommu_groups/%d" % (12 + i)), ignore_errors=True)
        else:
            probe = open(os.path.join(pf, "sriov_drivers_autoprobe")).read().strip() == "1"
            for i, addr in enumerate(self.vf_addresses(n)):
                d = _device(self.root, os.path.dirname(pf), addr, "0x8086", "0x10ca", "0x020000",
                            "igbvf" if probe else None, group=12 + i)
                _link(os.path.join(d, "physfn"), pf)
                _link(os.path.join(pf, "virtfn%d" % i), d)
        _write(os.path.join(pf, "sriov_numvfs"), "%d\n" % n)
        return None, None


@pytest.fixture
def root(tmp_path):
    return str(tmp_path)


def plan(root, **kw):
    return sriov.build_plan(sysfs.SysfsReader(root), kw.pop("pf", PF), **kw)


def run(root, kernel=None, **kw):
    p = plan(root, **kw)
    kernel = kernel or FakeKernel(root)
    return p, sriov.execute(p, sysfs.SysfsReader(root), kernel)


def test_reader_and_facts_shape(root):
    build(root, numvfs=2)
    s = sysfs.SysfsReader(root).sriov(PF)
    assert s == {"totalvfs": 7, "numvfs": 2, "drivers_autoprobe": True, "vf_device": "0x10ca", "offset": 128,
                 "stride": 2, "vfs": ["0000:03:10.0", "0000:03:10.2"], "source": "sysfs:/sys/bus/pci/devices/%s" % PF}
    assert sysfs.SysfsReader(root).sriov("0000:03:10.0") is None
    assert sysfs.SysfsReader(root).upstream_bridges("0000:03:10.2") == [PORT]
    assert sysfs.SysfsReader(root).upstream_bridges(PORT) == []


def test_create_check_mode_predicts_the_real_run_then_idempotent(root):
    build(root)
    predicted = plan(root, num_vfs=3, drivers_autoprobe=False)
    assert [a["text"] for a in predicted["actions"]] == ["set sriov_drivers_autoprobe to 0", "write 3 to sriov_numvfs"]
    assert predicted["vfs_after"] == ["0000:03:10.0", "0000:03:10.2", "0000:03:10.4"]
    assert predicted["file"]["action"] == "create" and predicted["changed"] is True
    assert 'ATTR{sriov_drivers_autoprobe}="0", ATTR{sriov_numvfs}="3"' in predicted["file"]["after"]
    assert 'ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="0000:03:00.0", DRIVER=="?*", ATTR{vendor}=="0x8086", ' \
           'ATTR{device}=="0x10c9"' in predicted["file"]["after"]
    real, after = run(root, num_vfs=3, drivers_autoprobe=False)
    assert real["actions"] == predicted["actions"]
    assert after["vfs"] == predicted["vfs_after"] and after["numvfs"] == 3 and after["drivers_autoprobe"] is False
    assert open(os.path.join(root, RULES.lstrip("/"))).read() == predicted["file"]["after"]
    # no driver probed the VFs (autoprobe off)
    assert sysfs.SysfsReader(root).link_name("/sys/bus/pci/devices/0000:03:10.0/driver") is None
    again = plan(root, num_vfs=3, drivers_autoprobe=False)
    assert again["changed"] is False and again["actions"] == [] and again["file"]["action"] == "unchanged"
    # by interface name
    assert plan(root, pf="eth5", num_vfs=3)["pf"] == PF


def test_nonzero_to_nonzero_goes_through_zero(root):
    kernel = build(root, numvfs=2)
    p = plan(root, num_vfs=4)
    assert [(a["attr"], a["value"]) for a in p["actions"]] == [("sriov_numvfs", "0"), ("sriov_numvfs", "4")]
    assert p["vfs_removed"] == ["0000:03:10.0", "0000:03:10.2"]
    # the kernel really refuses the direct write
    step, exc = kernel.write_attr_checked("/sys/bus/pci/devices/%s/sriov_numvfs" % PF, "4")
    assert exc.errno == errno.EBUSY
    _p, after = run(root, num_vfs=4)
    assert after["numvfs"] == 4 and len(after["vfs"]) == 4


def test_absent_removes_vfs_and_the_rule_entry(root):
    build(root)
    run(root, num_vfs=2)
    p, after = run(root, state="absent")
    assert after["numvfs"] == 0 and after["vfs"] == []
    assert p["file"]["action"] == "remove" and not os.path.exists(os.path.join(root, RULES.lstrip("/")))
    assert plan(root, state="absent")["changed"] is False


def test_not_persistent_leaves_the_file(root):
    build(root)
    p, _after = run(root, num_vfs=1, persistent=False)
    assert p["file"]["changed"] is False and not os.path.exists(os.path.join(root, RULES.lstrip("/")))


def test_validation_refusals(root):
    build(root)
    with pytest.raises(sriov.SriovError) as e:
        plan(root, num_vfs=8)
    assert e.value.failures[0]["code"] == "too_many_vfs" and "at most 7 (sriov_totalvfs)" in str(e.value)
    with pytest.raises(sriov.SriovError) as e:
        plan(root, pf=PORT, num_vfs=1)
    assert e.value.failures[0]["code"] == "not_sriov"
    with pytest.raises(sriov.SriovError) as e:
        plan(root, pf="0000:09:00.0", num_vfs=1)
    assert e.value.failures[0]["code"] == "not_found"
    with pytest.raises(sriov.SriovError) as e:
        plan(root, pf="no such if", num_vfs=1)
    assert e.value.failures[0]["code"] == "bad_pf"
    with pytest.raises(sriov.SriovError) as e:
        plan(root, pf="eth9", num_vfs=1)
    assert e.value.failures[0]["code"] == "not_found"


def test_vf_is_refused_as_a_pf(root):
    build(root, numvfs=1)
    with pytest.raises(sriov.SriovError) as e:
        plan(root, pf="0000:03:10.0", num_vfs=1)
    assert "virtual function of 0000:03:00.0" in str(e.value)


def test_pf_without_driver_is_refused_before_writing(root):
    build(root, pf_driver=None)
    with pytest.raises(sriov.SriovError) as e:
        plan(root, num_vfs=1)
    assert e.value.failures[0]["code"] == "pf_no_driver" and "ENOENT" in str(e.value)


def _hold_vfio(root, vf, pid=4242):
    d = os.path.realpath(os.path.join(root, "sys/bus/pci/devices", vf))
    _link(os.path.join(d, "driver"), os.path.join(root, "sys/bus/pci/drivers/vfio-pci"))
    os.makedirs(os.path.join(d, "vfio-dev/vfio3"), exist_ok=True)
    fd = os.path.join(root, "proc/%d/fd/7" % pid)
    os.makedirs(os.path.dirname(fd), exist_ok=True)
    os.symlink("/dev/vfio/devices/vfio3", fd)
    _write(os.path.join(root, "proc/%d/comm" % pid), "python3\n")


def test_vf_held_through_vfio_is_refused_even_with_force(root):
    build(root, numvfs=2, autoprobe=False)
    _hold_vfio(root, "0000:03:10.2")
    for force in (False, True):
        with pytest.raises(sriov.SriovError) as e:
            plan(root, num_vfs=1, force=force)
        f = e.value.failures
        assert [x["device"] for x in f] == ["0000:03:10.2"] and f[0]["code"] == "vf_in_use"
        assert "held open by 4242 (python3)" in f[0]["message"] and "vfio-pci" in f[0]["message"]
        assert "force" not in f[0]["remedy"]
    # changing only the persistence (same count) touches no VF: allowed
    assert plan(root, num_vfs=2)["actions"] == []


def test_vf_with_interface_up_needs_force(root):
    build(root, numvfs=1)
    d = os.path.realpath(os.path.join(root, "sys/bus/pci/devices/0000:03:10.0"))
    _write(os.path.join(d, "net/eth6/flags"), "0x1003\n")
    _write(os.path.join(d, "net/eth6/operstate"), "up\n")
    with pytest.raises(sriov.SriovError) as e:
        plan(root, state="absent")
    assert "network interface eth6 (driver igbvf) is up" in str(e.value) and "force: true" in str(e.value)
    p, after = run(root, state="absent", force=True)
    assert after["numvfs"] == 0 and p["in_use_overridden"] == {
        "0000:03:10.0": ["network interface eth6 (driver igbvf) is up"]}


@pytest.mark.parametrize("err,code,words", [
    (errno.EBUSY, "busy", "EBUSY"), (errno.ERANGE, "too_many_vfs", "ERANGE"),
    (errno.ENOMEM, "no_resources", "pci=realloc"), (errno.ENOENT, "pf_no_driver", "no driver is bound"),
    (errno.EINVAL, "invalid", "EINVAL"), (errno.EPERM, "not_permitted", "root"),
    (errno.EACCES, "not_permitted", "root"), (errno.EIO, "io_error", "dmesg"),
    (errno.ENOSPC, "no_resources", "ENOSPC"), (errno.EOPNOTSUPP, "not_supported", "max_vfs"),
    (errno.ENODEV, "no_device", "gone"), (errno.EXDEV, "sysfs_write", os.strerror(errno.EXDEV)),
])
def test_every_errno_has_a_message_and_a_remedy(root, err, code, words):
    build(root)
    p = plan(root, num_vfs=2)
    with pytest.raises(sriov.SriovError) as e:
        sriov.execute(p, sysfs.SysfsReader(root), FakeKernel(root, fail={"sriov_numvfs": err}))
    f = e.value.failures[0]
    assert f["code"] == code and words in f["message"] + f["remedy"] and f["remedy"]
    assert f["errno"] == err and f["attribute"] == "sriov_numvfs" and PF in f["message"]
    assert not os.path.exists(os.path.join(root, RULES.lstrip("/"))), "rule written although the write failed"


def test_open_enoent_means_not_sriov():
    f = sriov.errno_failure(PF, "sriov_numvfs", "2", OSError(errno.ENOENT, "x"), step="open")
    assert f["code"] == "not_sriov"


def test_rules_roundtrip_and_several_pfs(root):
    build(root)
    text = sriov.render_rules({PF: {"ids": "8086:10c9", "num_vfs": 2, "drivers_autoprobe": False},
                               "0000:81:00.1": {"ids": None, "num_vfs": 4, "drivers_autoprobe": None}})
    _write(os.path.join(root, RULES.lstrip("/")), text)
    managed = sriov.read_managed(sysfs.SysfsReader(root), RULES)
    assert managed == {PF: {"ids": "8086:10c9", "num_vfs": 2, "drivers_autoprobe": False},
                       "0000:81:00.1": {"ids": None, "num_vfs": 4, "drivers_autoprobe": None}}
    assert 'KERNEL=="0000:81:00.1", DRIVER=="?*", ATTR{sriov_numvfs}="4"' in text
    p = plan(root, state="absent")
    assert p["persistent_pfs"] == ["0000:81:00.1"] and p["file"]["action"] == "update"


def test_predict_vfs():
    assert sriov.predict_vfs("0000:03:00.0", {"offset": 128, "stride": 2}, 2) == ["0000:03:10.0", "0000:03:10.2"]
    assert sriov.predict_vfs("0000:3b:00.0", {"offset": 2, "stride": 1}, 3) == [
        "0000:3b:00.2", "0000:3b:00.3", "0000:3b:00.4"]
    assert sriov.predict_vfs("0000:3b:00.1", {"offset": 255, "stride": 1}, 2) == ["0000:3c:00.0", "0000:3c:00.1"]
    assert sriov.predict_vfs("0000:ff:ff.7", {"offset": 1, "stride": 1}, 1) is None
    assert sriov.predict_vfs(PF, {"offset": None, "stride": 2}, 1) is None
    assert sriov.predict_vfs(PF, {}, 0) == []


def test_vf_users_reuses_vfio_scanner(root):
    build(root, numvfs=1)
    reader = sysfs.SysfsReader(root)
    assert sriov.vf_users(reader, ["0000:03:10.0"], reader.pci_devices(), vfio.UsageScanner(reader)) == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sysfs.SRIOV_ATTRS), st.text(max_size=12)), st.integers(-2, 9),
       st.sampled_from([None, True, False]), st.sampled_from(["present", "absent"]))
def test_garbage_in_sysfs_never_raises(tmp_path, files, num_vfs, autoprobe, state):
    root = tempfile.mkdtemp(dir=str(tmp_path))
    build(root)
    pf = os.path.realpath(os.path.join(root, "sys/bus/pci/devices", PF))
    for name, text in files.items():
        with open(os.path.join(pf, name), "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
    reader = sysfs.SysfsReader(root)
    reader.sriov(PF)
    try:
        p = sriov.build_plan(reader, PF, num_vfs=num_vfs, drivers_autoprobe=autoprobe, state=state)
    except sriov.SriovError as e:
        assert e.failures and all(f["message"] and f["remedy"] for f in e.failures)
    else:
        assert isinstance(p["changed"], bool) and p["num_vfs_after"] >= 0
