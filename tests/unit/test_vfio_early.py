"""iommu.host.vfio_pci early binding (plugins/module_utils/iommu_early.py): the two methods on fake trees.

Each tree is a synthetic sysfs (tests/support/synthetic.py: e1000e 8086:10d3 devices) plus an RTL8139
(10ec:8139, driver 8139too) and a fake /lib/modules/<release> whose modules.builtin / modules.dep /
modules.alias / modules.builtin.modinfo say whether vfio-pci and the native drivers are built in or
modules. The initramfs tools, the listing and the boot configuration are fakes too; the grub path
runs the real iommu_bootargs code on /etc/default/grub.
"""
import os

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.iommu.host.plugins.module_utils import iommu_early as early
from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from ansible_collections.iommu.host.plugins.module_utils import iommu_vfio as vfio
from tests.support import synthetic

REL = "7.3.4-iommu-host"
RTL = "0000:00:0a.0"
RTL_ID = "10ec:8139"
RTL_ALIAS = "pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00"
FILE = early.DEFAULT_MODPROBE_FILE


def _write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


def _link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(os.path.relpath(target, os.path.dirname(path)), path)


def add_rtl(root, addr=RTL, driver="8139too", group=50):
    """An RTL8139 in its own IOMMU group, as the kernel shows it (uevent with MODALIAS, modalias file)."""
    sysd = os.path.join(root, "sys")
    ddir = os.path.join(sysd, "devices/pci0000:00", addr)
    _write(os.path.join(ddir, "uevent"), ("DRIVER=%s\n" % driver if driver else "")
           + "PCI_CLASS=20000\nPCI_ID=10EC:8139\nPCI_SUBSYS_ID=1AF4:1100\nPCI_SLOT_NAME=%s\nMODALIAS=%s\n"
           % (addr, RTL_ALIAS))
    _write(os.path.join(ddir, "modalias"), RTL_ALIAS + "\n")
    _write(os.path.join(ddir, "driver_override"), ("vfio-pci" if driver == "vfio-pci" else "(null)") + "\n")
    _link(os.path.join(sysd, "bus/pci/devices", addr), ddir)
    os.makedirs(os.path.join(sysd, "bus/pci/drivers/8139too"), exist_ok=True)
    if not os.path.lexists(os.path.join(sysd, "bus/pci/drivers/8139too/module")):
        os.makedirs(os.path.join(sysd, "module/8139too"), exist_ok=True)
        _link(os.path.join(sysd, "bus/pci/drivers/8139too/module"), os.path.join(sysd, "module/8139too"))
    if driver:
        _link(os.path.join(ddir, "driver"), os.path.join(sysd, "bus/pci/drivers", driver))
    gdir = os.path.join(sysd, "kernel/iommu_groups", str(group))
    _write(os.path.join(gdir, "type"), "DMA\n")
    _link(os.path.join(ddir, "iommu_group"), gdir)
    _link(os.path.join(gdir, "devices", addr), ddir)
    return addr


def modules_tree(root, vfio_builtin, native_builtin=("e1000e",), native_modules=("8139too",), order=None,
                 with_alias=True):
    """/lib/modules/<REL>: modules.builtin (in ``order``, link order), modules.dep, alias files."""
    base = os.path.join(root, "lib/modules", REL)
    paths = {"vfio_pci": "kernel/drivers/vfio/pci/vfio-pci.ko", "e1000e": "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
             "8139too": "kernel/drivers/net/ethernet/realtek/8139too.ko", "vfio": "kernel/drivers/vfio/vfio.ko"}
    builtin = list(order or [m for m in ("e1000e", "8139too", "vfio", "vfio_pci")
                             if m in native_builtin or (vfio_builtin and m in ("vfio", "vfio_pci"))])
    loadable = list(native_modules) + ([] if vfio_builtin else ["vfio", "vfio_pci"])
    _write(os.path.join(base, "modules.builtin"), "".join(paths[m] + "\n" for m in builtin))
    _write(os.path.join(base, "modules.dep"), "".join("%s:%s\n" % (paths[m] + ".xz", "") for m in loadable))
    if with_alias:
        alias = {"8139too": "pci:v000010ECd00008139sv*sd*bc*sc*i*", "e1000e": "pci:v00008086d000010D3sv*sd*bc*sc*i*",
                 "vfio_pci": "vfio_pci:v*d*sv*sd*bc*sc*i*"}
        _write(os.path.join(base, "modules.alias"), "# Aliases extracted from modules themselves.\n" + "".join(
            "alias %s %s\n" % (alias[m], m) for m in loadable if m in alias))
        _write(os.path.join(base, "modules.builtin.modinfo"), "".join(
            "%s.alias=%s\0%s.license=GPL\0" % (m, alias[m], m) for m in builtin if m in alias), "w")


@pytest.fixture
def host(tmp_path):
    root = str(tmp_path)
    addrs = synthetic.build(root, n_devices=2, vfio=(), release=REL)
    for a in addrs:
        ndir = os.path.join(os.path.realpath(os.path.join(root, "sys/bus/pci/devices", a)), "net")
        for i in os.listdir(ndir):
            _write(os.path.join(ndir, i, "operstate"), "down\n")
    _write(os.path.join(root, "proc/mounts"), "proc /proc proc rw 0 0\n")
    add_rtl(root)
    return root, addrs


class FakeModule:
    """What iommu_early.apply (and iommu_bootargs.run through it) use of AnsibleModule."""

    def __init__(self, root, bins=(), check_mode=False, outputs=None, rc=None):
        self.root = root
        self.bins = dict((b, "/usr/sbin/" + b) for b in bins)
        self.check_mode = check_mode
        self._diff = True
        self.ran = []
        self.outputs = outputs or {}
        self.rc = rc or {}
        self.warnings = []

    def get_bin_path(self, name, required=False):
        if name not in self.bins and required:
            raise AssertionError("missing %s" % name)
        return self.bins.get(name)

    def run_command(self, argv, **kw):
        self.ran.append(list(argv))
        name = os.path.basename(argv[0])
        return self.rc.get(name, 0), self.outputs.get(name, ""), "failed" if self.rc.get(name) else ""

    def backup_local(self, path):
        return path + ".bak"

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, msg, **kw):
        raise AssertionError(msg)


def bind_plan(root, devices, state="present", **kw):
    return vfio.build_plan(sysfs.SysfsReader(root), devices, state=state, **kw)


def eplan(root, devices, state="present", is_early=True, **kw):
    p = bind_plan(root, devices, state=state, driver=kw.pop("driver", "vfio-pci"))
    cmdline = kw.pop("cmdline", None)
    return early.plan(sysfs.SysfsReader(root), root, REL, p, is_early, cmdline=cmdline, **kw)


def apply(root, devices, module=None, listing=None, **kw):
    module = module or FakeModule(root)
    opts = dict((k, kw.pop(k)) for k in ("bootloader", "bootloader_update", "update_initramfs") if k in kw)
    ep = eplan(root, devices, **kw)
    res = early.apply(module, ep, root=root, list_initramfs=(lambda lister, image: listing), **opts)
    return ep, res, module


def read(root, rel=FILE):
    path = os.path.join(root, rel.lstrip("/"))
    return open(path).read() if os.path.exists(path) else None


def debian_initramfs(root):
    _write(os.path.join(root, "boot/initrd.img-%s" % REL), "x")
    return ("update-initramfs", "lsinitramfs")


LISTING = ("usr/lib/modules/%s/kernel/drivers/net/ethernet/realtek/8139too.ko.zst\n"
           "usr/lib/modules/%s/kernel/drivers/vfio/pci/vfio-pci.ko.zst\netc/modprobe.d\n" % (REL, REL))


# ---------------------------------------------------------------------------
# method modprobe: vfio-pci is a loadable module


def test_modprobe_method_writes_ids_and_softdep_and_regenerates_initramfs(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    m = FakeModule(root, bins=debian_initramfs(root))
    ep, (res, reboot, diffs), _m = apply(root, [RTL], module=m, listing=LISTING)
    assert res["method"] == "modprobe" and res["vfio_pci"] == "module"
    assert "modules.dep lists vfio_pci" in res["reason"]
    text = read(root)
    assert "options vfio-pci ids=10ec:8139\n" in text
    assert "softdep 8139too pre: vfio-pci\n" in text
    assert "# device 0000:00:0a.0 10ec:8139 native=8139too" in text
    assert res["devices"][0]["source"].startswith("bound driver 8139too")
    assert res["kernel_arg"] is None and reboot is True
    assert res["initramfs"]["contains"] == ["8139too", "vfio_pci"] and res["initramfs"]["regenerate"]
    assert m.ran == [["/usr/sbin/update-initramfs", "-u", "-k", "all"]]
    assert diffs[0]["before"] == "" and diffs[0]["after"] == text
    # parsed back, the file gives vfio-pci exactly these ids
    assert [v for _l, v in early.vfio_ids_options(early.parse_modprobe_conf(text))] == ["10ec:8139"]

    # second run: nothing changes, nothing regenerated, no reboot
    m2 = FakeModule(root, bins=debian_initramfs(root))
    _ep, (res2, reboot2, diffs2), _m = apply(root, [RTL], module=m2, listing=LISTING)
    assert not res2["changed"] and reboot2 is False and diffs2 == [] and m2.ran == []
    assert res2["initramfs"]["regenerate"] is False


def test_modprobe_method_check_mode_predicts_and_writes_nothing(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    m = FakeModule(root, bins=debian_initramfs(root), check_mode=True)
    _ep, (res, reboot, diffs), _m = apply(root, [RTL], module=m, listing=LISTING)
    assert res["changed"] and reboot and res["file"]["action"] == "create"
    assert res["initramfs"]["regenerate"] and m.ran == []
    assert read(root) is None and "options vfio-pci ids=10ec:8139" in diffs[0]["after"]


def test_initramfs_without_the_modules_is_left_alone(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    m = FakeModule(root, bins=debian_initramfs(root))
    _ep, (res, reboot, _d), _m = apply(root, [RTL], module=m, listing="usr/lib/modules/x/ext4.ko\n")
    assert res["initramfs"]["regenerate"] is False and "holds none of" in res["initramfs"]["reason"]
    assert m.ran == [] and reboot


@pytest.mark.parametrize("bins,image,reason", [
    ((), False, "no initramfs tool"),
    (("update-initramfs", "lsinitramfs"), False, "no initramfs image"),
])
def test_initramfs_tool_or_image_absent(host, bins, image, reason):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    m = FakeModule(root, bins=bins)
    _ep, (res, _r, _d), _m = apply(root, [RTL], module=m, listing=LISTING)
    assert reason in res["initramfs"]["reason"] and not res["initramfs"]["regenerate"] and m.ran == []


def test_dracut_and_unlistable_image_regenerates_to_be_safe(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    _write(os.path.join(root, "boot/initramfs-%s.img" % REL), "x")
    m = FakeModule(root, bins=("dracut",))
    _ep, (res, _r, _d), _m = apply(root, [RTL], module=m, listing=None)
    assert res["initramfs"]["regenerate"] and "could not be listed" in res["initramfs"]["reason"]
    assert m.ran == [["/usr/sbin/dracut", "-f", "--regenerate-all"]]


def test_update_initramfs_false_warns(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    m = FakeModule(root, bins=debian_initramfs(root))
    _ep, (res, _r, _d), _m = apply(root, [RTL], module=m, listing=LISTING, update_initramfs=False)
    assert m.ran == [] and any("must be regenerated" in w for w in res["warnings"])


def test_failed_regeneration_restores_the_file_so_a_rerun_retries(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    m = FakeModule(root, bins=debian_initramfs(root), rc={"update-initramfs": 1})
    with pytest.raises(early.EarlyError) as e:
        apply(root, [RTL], module=m, listing=LISTING)
    assert "update-initramfs -u -k all failed (rc=1)" in str(e.value) and read(root) is None
    m2 = FakeModule(root, bins=debian_initramfs(root))
    _ep, (res, _r, _d), _m = apply(root, [RTL], module=m2, listing=LISTING)
    assert res["file"]["action"] == "create" and len(m2.ran) == 1


def test_native_builtin_with_modular_vfio_is_refused(host):
    root, addrs = host
    modules_tree(root, vfio_builtin=False, native_builtin=("e1000e",))
    with pytest.raises(early.EarlyError) as e:
        eplan(root, ["8086:10d3"])
    codes = [f["code"] for f in e.value.failures]
    assert codes == ["native_builtin", "native_builtin"]
    assert "before any module (vfio-pci included) can load" in str(e.value)


def test_native_from_modalias_when_already_on_vfio_pci(tmp_path):
    root = str(tmp_path)
    synthetic.build(root, n_devices=1, vfio=(), release=REL)
    add_rtl(root, driver="vfio-pci")
    modules_tree(root, vfio_builtin=False)
    ep = eplan(root, [RTL])
    dev = ep["devices"][0]
    assert dev["native_drivers"] == ["8139too"] and dev["source"].startswith("modalias %s" % RTL_ALIAS)
    assert ep["softdeps"] == ["8139too"]


def test_native_from_modprobe_R_when_alias_files_are_missing(tmp_path):
    root = str(tmp_path)
    synthetic.build(root, n_devices=1, vfio=(), release=REL)
    add_rtl(root, driver="vfio-pci")
    modules_tree(root, vfio_builtin=False, with_alias=False)
    asked = []

    def resolver(modalias):
        asked.append(modalias)
        return ["8139too"]
    ep = eplan(root, [RTL], resolver=resolver)
    assert asked == [RTL_ALIAS] and ep["devices"][0]["native_drivers"] == ["8139too"]
    assert ep["devices"][0]["source"] == "modprobe -R %s" % RTL_ALIAS


def test_absent_removes_the_file(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    apply(root, [RTL], listing=LISTING)
    assert read(root)
    m = FakeModule(root, bins=debian_initramfs(root))
    ep, (res, reboot, _d), _m = apply(root, [RTL], module=m, state="absent", listing=LISTING)
    assert res["file"]["action"] == "remove" and read(root) is None and reboot
    assert res["method"] is None and res["kernel_arg"] is None
    assert m.ran == [["/usr/sbin/update-initramfs", "-u", "-k", "all"]]


# ---------------------------------------------------------------------------
# method kernel-arg: vfio-pci is built in


def grub_root(root, cmdline="BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet"):
    _write(os.path.join(root, "etc/default/grub"), 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
           'GRUB_CMDLINE_LINUX=""\n')
    _write(os.path.join(root, "boot/grub/grub.cfg"), "")
    _write(os.path.join(root, "proc/cmdline"), cmdline + "\n")


def test_kernel_arg_method_with_builtin_vfio_and_modular_native(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=True, native_builtin=("e1000e",))
    grub_root(root)
    m = FakeModule(root, bins=("update-grub",) + debian_initramfs(root))
    ep, (res, reboot, diffs), _m = apply(root, [RTL], module=m, listing=LISTING)
    assert res["method"] == "kernel-arg" and res["vfio_pci"] == "builtin"
    assert "modules.builtin lists vfio_pci" in res["reason"] and "modprobe.d options do not apply" in res["reason"]
    text = read(root)
    assert "options vfio-pci" not in text and "softdep 8139too pre: vfio-pci\n" in text
    assert "# method kernel-arg ids=10ec:8139" in text
    grub = read(root, "/etc/default/grub")
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet vfio-pci.ids=10ec:8139"' in grub
    ka = res["kernel_arg"]
    assert ka["changed"] and ka["bootloader"] == "grub" and ka["pending"] == ["vfio-pci.ids=10ec:8139"]
    assert ["/usr/sbin/update-grub"] in m.ran and reboot
    # 8139too is in the initramfs, with the old modprobe.d: regenerated
    assert res["initramfs"]["contains"] == ["8139too"] and ["/usr/sbin/update-initramfs", "-u", "-k", "all"] in m.ran
    assert {d["before_header"] for d in diffs} == {FILE, os.path.join(root, "etc/default/grub")}

    # rerun before the reboot: nothing changes, the argument is still pending
    m2 = FakeModule(root, bins=("update-grub",) + debian_initramfs(root))
    _ep, (res2, reboot2, _d), _m = apply(root, [RTL], module=m2, listing=LISTING)
    assert not res2["changed"] and m2.ran == [] and reboot2 is True
    # after the reboot: nothing pending
    grub_root(root, cmdline="BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet vfio-pci.ids=10ec:8139")
    _write(os.path.join(root, "etc/default/grub"), grub)
    _ep, (res3, reboot3, _d), _m = apply(root, [RTL], module=FakeModule(root, bins=("update-grub",)))
    assert not res3["changed"] and reboot3 is False


def test_kernel_arg_removed_with_the_last_device(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=True)
    grub_root(root)
    apply(root, [RTL], module=FakeModule(root, bins=("update-grub",)))
    m = FakeModule(root, bins=("update-grub",))
    _ep, (res, _r, _d), _m = apply(root, [RTL], module=m, state="absent")
    assert res["kernel_arg"]["state"] == "absent" and res["kernel_arg"]["changed"]
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in read(root, "/etc/default/grub") and read(root) is None


def test_kernel_arg_check_mode(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=True)
    grub_root(root)
    before = read(root, "/etc/default/grub")
    m = FakeModule(root, bins=("update-grub",), check_mode=True)
    _ep, (res, reboot, diffs), _m = apply(root, [RTL], module=m)
    assert res["changed"] and reboot and m.ran == [] and read(root) is None
    assert read(root, "/etc/default/grub") == before
    assert any("vfio-pci.ids=10ec:8139" in d["after"] for d in diffs)


def test_builtin_native_initialised_before_vfio_is_refused(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=True, native_builtin=("e1000e",), order=["e1000e", "vfio", "vfio_pci"])
    grub_root(root)
    with pytest.raises(early.EarlyError) as e:
        eplan(root, ["8086:10d3"])
    assert {f["code"] for f in e.value.failures} == {"native_builtin_first"}
    assert "comes first" in str(e.value)


def test_builtin_native_initialised_after_vfio_needs_no_softdep(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=True, native_builtin=("e1000e",), order=["vfio", "vfio_pci", "e1000e"])
    ep = eplan(root, ["8086:10d3"])
    assert ep["method"] == "kernel-arg" and ep["softdeps"] == [] and ep["ids"] == ["8086:10d3"]
    assert all(d["native_builtin"] == ["e1000e"] for d in ep["devices"])
    assert ep["kernel_arg"] == {"state": "present", "args": ["vfio-pci.ids=8086:10d3"]}


def test_foreign_vfio_ids_on_the_cmdline_and_in_modprobe_d_warn(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    _write(os.path.join(root, "etc/modprobe.d/gpu.conf"), "# mine\noptions vfio_pci ids=10de:1b80 \\\n  disable_vga=1\n")
    ep = eplan(root, [RTL], cmdline="root=/dev/vda vfio_pci.ids=10de:1b80")
    assert any("gpu.conf line 2 also gives vfio-pci ids=10de:1b80" in w for w in ep["warnings"])
    assert any("vfio_pci.ids=10de:1b80" in w for w in ep["warnings"])


def test_foreign_kernel_arg_value_is_replaced_with_a_warning(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=True)
    ep = eplan(root, [RTL], cmdline="root=/dev/vda vfio-pci.ids=10de:1b80")
    assert ep["kernel_arg"] == {"state": "present", "args": ["vfio-pci.ids=10ec:8139"]}
    assert any("set outside this module" in w and "vfio-pci.ids=10ec:8139 instead" in w for w in ep["warnings"])
    ep = eplan(root, [RTL], cmdline="root=/dev/vda vfio-pci.ids=10ec:8139")
    assert ep["warnings"] == []


# ---------------------------------------------------------------------------
# refusals


def test_shared_id_refused_unless_accepted(host):
    root, addrs = host
    modules_tree(root, vfio_builtin=True, native_builtin=(), native_modules=("8139too", "e1000e"))
    with pytest.raises(early.EarlyError) as e:
        eplan(root, [addrs[0]])
    assert e.value.failures[0]["code"] == "shared_id" and addrs[1] in e.value.failures[0]["device"]
    ep = eplan(root, [addrs[0]], allow_shared_ids=True)
    assert any(addrs[1] in w and "early_allow_shared_ids" in w for w in ep["warnings"])
    ep = eplan(root, ["8086:10d3"])    # both selected: fine
    assert sorted(d["address"] for d in ep["devices"]) == sorted(addrs)


def test_releasing_one_of_two_same_id_devices_is_refused(host):
    root, addrs = host
    modules_tree(root, vfio_builtin=True, native_builtin=(), native_modules=("8139too", "e1000e"))
    grub_root(root)
    apply(root, ["8086:10d3"], module=FakeModule(root, bins=("update-grub",)))
    with pytest.raises(early.EarlyError) as e:
        eplan(root, [addrs[0]], state="absent")
    assert e.value.failures[0]["code"] == "shared_id"


def test_unknown_vfio_pci_kind_is_a_clear_error(host):
    root, _addrs = host
    with pytest.raises(early.EarlyError) as e:
        eplan(root, [RTL])
    assert e.value.failures[0]["code"] == "vfio_pci_unknown" and "/lib/modules/%s" % REL in str(e.value)


def test_vfio_pci_kind_from_sys_module_without_modules_dir(host):
    root, _addrs = host
    os.makedirs(os.path.join(root, "sys/module/vfio_pci/parameters"))
    ep = eplan(root, [RTL])
    assert ep["vfio_pci"] == "builtin" and "without initstate" in ep["reason"]


def test_sys_module_wins_over_empty_module_lists(host):
    """An install whose modules.builtin and modules.dep are empty (depmod without modules_install): the
    running kernel's /sys/module tells - vfio_pci without initstate is built in, a loaded 8139too a module."""
    root, _addrs = host
    base = os.path.join(root, "lib/modules", REL)
    for f in ("modules.builtin", "modules.dep", "modules.alias"):
        _write(os.path.join(base, f), "")
    os.makedirs(os.path.join(root, "sys/module/vfio_pci/parameters"))
    _write(os.path.join(root, "sys/module/8139too/initstate"), "live\n")
    ep = eplan(root, [RTL])
    assert ep["vfio_pci"] == "builtin" and "/sys/module/vfio_pci exists without initstate" in ep["reason"]
    assert ep["softdeps"] == ["8139too"] and ep["method"] == "kernel-arg"


def test_release_removes_the_dynamic_ids_the_file_gave(host):
    """vfio-pci holds ids= as dynamic IDs: a released device would be probed back to vfio-pci."""
    root, _addrs = host
    modules_tree(root, vfio_builtin=True)
    grub_root(root)
    apply(root, [RTL], module=FakeModule(root, bins=("update-grub",)))
    assert eplan(root, [RTL])["remove_ids"] == []
    ep = eplan(root, [RTL], state="absent")
    assert ep["remove_ids"] == [RTL_ID]
    path = os.path.join(root, "sys/bus/pci/drivers/vfio-pci/remove_id")
    _write(path, "")
    assert early.remove_dynamic_ids(root, ep["remove_ids"] + ["bogus"]) == [RTL_ID]
    assert open(path).read() == "10ec 8139"
    os.unlink(path)
    assert early.remove_dynamic_ids(root, [RTL_ID]) == []    # no vfio-pci driver: nothing to do


def test_native_falls_back_to_the_record_when_nothing_matches(tmp_path):
    """Once on vfio-pci, a built-in native driver has no modules.alias line; the file's (or the udev
    rule's) record keeps it, so a rerun changes nothing."""
    root = str(tmp_path)
    synthetic.build(root, n_devices=1, vfio=(), release=REL)
    add_rtl(root, driver="vfio-pci")
    modules_tree(root, vfio_builtin=True, with_alias=False)
    p = bind_plan(root, [RTL])
    ep = early.plan(sysfs.SysfsReader(root), root, REL, p, True, resolver=lambda m: [],
                    original={RTL: "8139too"})
    assert ep["devices"][0]["native_drivers"] == ["8139too"] and "recorded" in ep["devices"][0]["source"]
    ep = early.plan(sysfs.SysfsReader(root), root, REL, p, True, resolver=lambda m: [])
    assert ep["devices"][0]["native_drivers"] == [] and "matches no module" in ep["devices"][0]["source"]


def test_foreign_file_and_variant_driver_refused(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    _write(os.path.join(root, FILE.lstrip("/")), "options vfio-pci ids=1234:5678\n")
    with pytest.raises(early.EarlyError) as e:
        eplan(root, [RTL])
    assert e.value.failures[0]["code"] == "foreign_file"
    os.unlink(os.path.join(root, FILE.lstrip("/")))
    p = bind_plan(root, [RTL])
    p["driver"] = "mlx5_vfio_pci"
    with pytest.raises(early.EarlyError) as e:
        early.plan(sysfs.SysfsReader(root), root, REL, p, True)
    assert e.value.failures[0]["code"] == "early_driver"


def test_early_false_leaves_the_file(host):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    apply(root, [RTL])
    before = read(root)
    ep = eplan(root, [RTL], is_early=False)
    assert not ep["file"]["changed"] and ep["method"] == "modprobe" and read(root) == before


def test_write_error_names_the_errno(host, tmp_path):
    root, _addrs = host
    modules_tree(root, vfio_builtin=False)
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    _write(os.path.join(root, "etc/modprobe.d"), "not a directory")
    with pytest.raises(early.EarlyError) as e:
        apply(root, [RTL])
    assert "cannot write %s" % FILE in str(e.value) and "ENOTDIR" in str(e.value)


# ---------------------------------------------------------------------------
# parsers (hypothesis)

_name = st.builds(lambda a, b: a + b, st.sampled_from("abcdefgz0189"),
                  st.text(alphabet="abcdez0189_-", max_size=12))
_hex4 = st.text(alphabet="0123456789abcdef", min_size=4, max_size=4)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.lists(_name, min_size=1, max_size=4), _name,
                          st.sampled_from(["", ".xz", ".zst", ".gz"])), max_size=30))
def test_modules_builtin_and_dep_round_trip(entries):
    lines = ["kernel/%s/%s.ko%s" % ("/".join(d), n, c) for d, n, c in entries]
    want = []
    for _d, n, _c in entries:
        if n.replace("-", "_") not in want:
            want.append(n.replace("-", "_"))
    assert early.parse_modules_builtin("\n".join(lines)) == want
    assert early.parse_modules_dep("".join("%s: kernel/x/dep.ko\n" % line for line in lines)) == set(want)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_parsers_never_raise(text):
    early.parse_modules_builtin(text)
    early.parse_modules_dep(text)
    early.parse_modules_alias(text)
    early.parse_builtin_modinfo(text)
    early.parse_builtin_modinfo(text.encode("utf-8", "surrogatepass"))
    d = early.parse_modprobe_conf(text)
    early.vfio_ids_options(d)
    early.read_state(text)
    early.cmdline_vfio_ids(text)
    early.modules_in_listing(text, ["vfio_pci"])
    assert all(isinstance(cmd, str) and cmd and not cmd.startswith("#") for _l, cmd, _w in d)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_hex4, _hex4, _hex4, _hex4), max_size=6), st.lists(_name, max_size=5))
def test_modules_alias_match(ids, mods):
    aliases = [("pci:v0000%sd0000%ssv*sd*bc*sc*i*" % (v.upper(), d.upper()), m) for (v, d, _s, _t), m in zip(ids, mods)]
    text = "# comment\n" + "".join("alias %s %s\n" % a for a in aliases)
    assert early.parse_modules_alias(text) == [(p, m.replace("-", "_")) for p, m in aliases]
    for (v, d, s, t), m in zip(ids, mods):
        modalias = "pci:v0000%sd0000%ssv0000%ssd0000%sbc02sc00i00" % (v.upper(), d.upper(), s.upper(), t.upper())
        assert m.replace("-", "_") in early.match_modalias(modalias, early.parse_modules_alias(text))
    modinfo = "".join("%s.alias=%s\0%s.license=GPL\0" % (m, p, m) for p, m in aliases)
    assert early.parse_builtin_modinfo(modinfo.encode()) == early.parse_modules_alias(text)


_addr = st.builds(lambda b, d, f: "0000:%02x:%02x.%d" % (b, d, f), st.integers(0, 255), st.integers(0, 31),
                  st.integers(0, 7))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_addr, st.tuples(_hex4, _hex4, st.lists(_name, max_size=3), st.booleans()), max_size=6),
       st.sampled_from(early.METHODS))
def test_render_read_state_round_trip(devs, method):
    managed = dict((a, {"ids": "%s:%s" % (v, d), "native": [n.replace("-", "_") for n in nat],
                        "builtin": [n.replace("-", "_") for n in nat][:1] if b else []})
                   for a, (v, d, nat, b) in devs.items())
    text = early.render(managed, method, REL)
    state = early.read_state(text)
    assert state["managed"] == managed
    if not managed:
        assert text == ""
        return
    assert state["ours"] and state["method"] == method
    ids = sorted(set(i["ids"] for i in managed.values()))
    got = [v for _l, v in early.vfio_ids_options(early.parse_modprobe_conf(text))]
    assert got == ([",".join(ids)] if method == "modprobe" else [])
    soft = sorted(set(n for i in managed.values() for n in i["native"] if n not in i["builtin"]))
    assert [w[0] for _l, c, w in early.parse_modprobe_conf(text) if c == "softdep"] == soft
    assert all(w[1:] == ["pre:", "vfio-pci"] for _l, c, w in early.parse_modprobe_conf(text) if c == "softdep")


@given(st.text(max_size=12))
def test_validate_id(text):
    got = early.validate_id(text)
    if got is not None:
        assert len(got) == 9 and got[4] == ":" and all(c in "0123456789abcdef" for c in got.replace(":", ""))
