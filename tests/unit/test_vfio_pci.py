"""iommu.host.vfio_pci: selection, group policy, safety refusals, planning and the sysfs actions.

The trees come from tests/support/synthetic.py (extended here with /proc/mounts, block devices,
network interfaces and framebuffers) and from the captured test-bed trees. The kernel's side of
the driver_override / unbind / drivers_probe writes is played by FakeKernel.
"""
import json
import os
import shutil

import pytest

from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from ansible_collections.iommu.host.plugins.module_utils import iommu_vfio as vfio
from tests.support import synthetic

RULES = vfio.DEFAULT_RULES_FILE
MODULES = vfio.DEFAULT_MODULES_FILE


# ---------------------------------------------------------------------------
# tree helpers


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def dev_dir(root, addr):
    return os.path.realpath(os.path.join(root, "sys/bus/pci/devices", addr))


def add_interface(root, addr, ifname, up=True, ipv6=None, route=None):
    """/sys/class/net/<if> -> the device's net/<if>, with flags/operstate; optional v6 address, route."""
    ddir = dev_dir(root, addr)
    ndir = os.path.join(ddir, "net", ifname)
    for old in os.listdir(os.path.join(ddir, "net")) if os.path.isdir(os.path.join(ddir, "net")) else []:
        if old != ifname:
            shutil.rmtree(os.path.join(ddir, "net", old))
    _write(os.path.join(ndir, "flags"), "0x1003\n" if up else "0x1002\n")
    _write(os.path.join(ndir, "operstate"), "up\n" if up else "down\n")
    link = os.path.join(root, "sys/class/net", ifname)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.relpath(ndir, os.path.dirname(link)), link)
    if ipv6:
        os.makedirs(os.path.join(root, "proc/net"), exist_ok=True)
        with open(os.path.join(root, "proc/net/if_inet6"), "a") as f:
            f.write("%s 02 40 00 80 %s\n" % (ipv6, ifname))
    if route:
        path = os.path.join(root, "proc/net/route")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write(path, "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n")
        with open(path, "a") as f:
            f.write("%s\t%s\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" % (ifname, route))


def add_block(root, addr, name, mount=None, fstype="ext4", swap=False, sub="virtio3/block"):
    """A block device under the PCI function (as virtio-blk/NVMe put it) and a mount or swap of it."""
    bdir = os.path.join(dev_dir(root, addr), sub, name)
    _write(os.path.join(bdir, "dev"), "254:0\n")
    link = os.path.join(root, "sys/class/block", name)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.relpath(bdir, os.path.dirname(link)), link)
    if mount:
        with open(os.path.join(root, "proc/mounts"), "a") as f:
            f.write("/dev/%s %s %s rw,relatime 0 0\n" % (name, mount, fstype))
    if swap:
        path = os.path.join(root, "proc/swaps")
        if not os.path.exists(path):
            _write(path, "Filename\tType\tSize\tUsed\tPriority\n")
        with open(path, "a") as f:
            f.write("/dev/%s partition 1048572 0 -2\n" % name)


def add_9p(root, addr, tag, mount):
    vdir = os.path.join(dev_dir(root, addr), "virtio1")
    _write(os.path.join(vdir, "mount_tag"), tag + "\x00")
    link = os.path.join(root, "sys/bus/virtio/devices/virtio1")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.relpath(vdir, os.path.dirname(link)), link)
    with open(os.path.join(root, "proc/mounts"), "a") as f:
        f.write("%s %s 9p ro,relatime,trans=virtio 0 0\n" % (tag, mount))


def add_fb(root, addr):
    fb = os.path.join(root, "sys/devices/virtual/graphics/fb0")
    os.makedirs(fb, exist_ok=True)
    _write(os.path.join(fb, "name"), "bochs-drmdrmfb\n")
    os.symlink(os.path.relpath(dev_dir(root, addr), fb), os.path.join(fb, "device"))
    link = os.path.join(root, "sys/class/graphics/fb0")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.relpath(fb, os.path.dirname(link)), link)


def quiet(root):
    """Interfaces down: the synthetic tree's NICs report operstate up."""
    for d in os.listdir(os.path.join(root, "sys/bus/pci/devices")):
        ndir = os.path.join(dev_dir(root, d), "net")
        if os.path.isdir(ndir):
            for ifname in os.listdir(ndir):
                _write(os.path.join(ndir, ifname, "operstate"), "down\n")


@pytest.fixture
def host(tmp_path):
    """4 e1000e (one group each; [1] on vfio-pci) + a bridge group with two e1000e, interfaces down."""
    root = str(tmp_path)
    addrs = synthetic.build(root, n_devices=4, vfio=(1,), bridge_groups=1)
    quiet(root)
    _write(os.path.join(root, "proc/mounts"), "proc /proc proc rw 0 0\n")
    return root, addrs


class FakeKernel(vfio.SysfsWriter):
    """Plays the PCI core: driver_override, driver/unbind and drivers_probe act on the tree."""

    def __init__(self, root, default_drivers=None, refuse=()):
        super(FakeKernel, self).__init__(root)
        self.defaults = default_drivers or {}
        self.refuse = set(refuse)
        self.log = []

    def _dev(self, addr):
        return dev_dir(self.root, addr)

    def write_attr(self, rel, text):
        self.log.append((rel, text))
        parts = rel.strip("/").split("/")
        if rel == "/sys/bus/pci/drivers_probe":
            addr = text.strip()
            d = self._dev(addr)
            if os.path.lexists(os.path.join(d, "driver")):
                return
            with open(os.path.join(d, "driver_override")) as f:
                override = f.read().strip()
            drv = override if override not in ("", "(null)") else self.defaults.get(addr, "e1000e")
            if drv in self.refuse:
                return
            os.symlink(os.path.join(self.root, "sys/bus/pci/drivers", drv), os.path.join(d, "driver"))
        elif parts[-1] == "driver_override":
            _write(os.path.join(self._dev(parts[4]), "driver_override"),
                   "(null)\n" if text.strip() == "" else text.strip() + "\n")
        elif parts[-2:] == ["driver", "unbind"]:
            d = self._dev(text.strip())
            assert os.path.lexists(os.path.join(d, "driver")), "unbind of an unbound device"
            os.unlink(os.path.join(d, "driver"))
        else:
            raise AssertionError("unexpected sysfs write %s" % rel)


def plan(root, devices, **kw):
    return vfio.build_plan(sysfs.SysfsReader(root), devices, **kw)


def run(root, devices, kernel=None, loaded=None, **kw):
    """A real run: plan, then execute against the fake kernel. Returns (plan, results, kernel)."""
    reader = sysfs.SysfsReader(root)
    p = vfio.build_plan(reader, devices, **kw)
    kernel = kernel or FakeKernel(root)
    res = vfio.execute(p, reader, kernel, load_module=loaded)
    return p, res, kernel


def driver(root, addr):
    link = os.path.join(dev_dir(root, addr), "driver")
    return os.path.basename(os.readlink(link)) if os.path.lexists(link) else None


# ---------------------------------------------------------------------------
# selection


def test_parse_selector():
    assert vfio.parse_selector("0000:00:09.0") == ("address", "0000:00:09.0")
    assert vfio.parse_selector("00:09.0") == ("address", "0000:00:09.0")
    assert vfio.parse_selector("8086:10D3") == ("id", "8086:10d3")
    assert vfio.parse_selector(7) == ("group", "7")
    assert vfio.parse_selector("group:12") == ("group", "12")
    assert vfio.parse_selector("eth0")[0] is None


def test_select_by_address_id_and_group(host):
    root, addrs = host
    r = sysfs.SysfsReader(root)
    devs, groups = r.pci_devices(), r.groups()
    assert vfio.select([addrs[0][5:]], devs, groups) == ([addrs[0]], [])
    by_id, fails = vfio.select(["8086:10d3"], devs, groups)
    assert sorted(by_id) == sorted(addrs) and not fails   # every match, the bridge has other ids
    gid = devs[addrs[4]]["iommu_group"]
    assert vfio.select([gid], devs, groups)[0] == [addrs[4], addrs[5]]   # endpoints, not the bridge
    chosen, fails = vfio.select(["0000:99:00.0", "1234:5678", "99", "nonsense"], devs, groups)
    assert chosen == [] and [f["code"] for f in fails] == ["not_found"] * 3 + ["bad_selector"]
    with pytest.raises(vfio.VfioError, match="no PCI device with ID 1234:5678"):
        plan(root, ["1234:5678"])


# ---------------------------------------------------------------------------
# groups


def test_group_bind_all_takes_every_endpoint(host):
    root, addrs = host
    p = plan(root, [addrs[4]])
    assert [d["address"] for d in p["devices"]] == [addrs[4], addrs[5]]
    member = p["devices"][1]
    assert member["selected"] is False and member["group_member_of"] == [addrs[4]]
    assert member["actions"] == ["set driver_override to vfio-pci", "unbind from e1000e",
                                 "probe (vfio-pci takes the device)"]


def test_group_refuse_names_the_members(host):
    root, addrs = host
    with pytest.raises(vfio.VfioError) as e:
        plan(root, [addrs[4]], group_policy="refuse")
    assert addrs[5] in str(e.value) and "group_policy" in str(e.value)
    assert e.value.failures[0]["members"] == [addrs[5]]
    # selecting the whole group is fine
    p = plan(root, [addrs[4], addrs[5]], group_policy="refuse")
    assert [d["address"] for d in p["devices"]] == [addrs[4], addrs[5]]


# ---------------------------------------------------------------------------
# bind / release against the fake kernel


def test_bind_release_cycle_and_idempotence(host):
    root, addrs = host
    check = plan(root, [addrs[0]])
    p, res, kernel = run(root, [addrs[0]], loaded=None)
    assert check == p and p["changed"]        # check mode's plan is the real run's plan
    assert res[0]["driver_before"] == "e1000e" and res[0]["driver_after"] == "vfio-pci"
    assert driver(root, addrs[0]) == "vfio-pci"
    base = "/sys/bus/pci/devices/%s" % addrs[0]
    assert kernel.log == [(base + "/driver_override", "vfio-pci"), (base + "/driver/unbind", addrs[0]),
                          ("/sys/bus/pci/drivers_probe", addrs[0])]
    assert not any("new_id" in rel for rel, _text in kernel.log)
    rules = open(os.path.join(root, RULES.lstrip("/"))).read()
    assert 'KERNEL=="%s", ATTR{driver_override}="vfio-pci"' % addrs[0] in rules
    assert "original-driver=e1000e" in rules
    assert open(os.path.join(root, MODULES.lstrip("/"))).read().splitlines()[-1] == "vfio-pci"
    assert [f["action"] for f in p["files"]] == ["create", "create"]

    again = plan(root, [addrs[0]])
    assert again["changed"] is False and again["devices"][0]["actions"] == []

    # release: check mode predicts the original driver from the rule file
    rel_plan = plan(root, [addrs[0]], state="absent")
    assert rel_plan["devices"][0]["driver_after"] == "e1000e"
    p, res, kernel = run(root, [addrs[0]], state="absent")
    assert rel_plan == p
    assert res[0]["restored_to"] == "e1000e" == driver(root, addrs[0])
    assert kernel.log[0] == (base + "/driver_override", "\n")
    assert not os.path.exists(os.path.join(root, RULES.lstrip("/")))
    assert not os.path.exists(os.path.join(root, MODULES.lstrip("/")))
    assert [f["action"] for f in p["files"]] == ["remove", "remove"]
    assert plan(root, [addrs[0]], state="absent")["changed"] is False


def test_vendor_device_binds_all_matches_and_keeps_others_in_rule(host):
    root, addrs = host
    p, res, _k = run(root, ["8086:10d3"])
    assert all(driver(root, a) == "vfio-pci" for a in addrs)
    # the device already on vfio-pci with its override set needs nothing
    already = [d for d in res if d["address"] == addrs[1]][0]
    assert already["actions"] == [] and already["changed"] is False
    assert sorted(p["managed_after"]) == sorted(addrs)
    run(root, [addrs[0]], state="absent")
    managed = vfio.read_managed(sysfs.SysfsReader(root), RULES)
    assert addrs[0] not in managed and addrs[2] in managed
    assert managed[addrs[2]] == {"ids": "8086:10d3", "original_driver": "e1000e", "driver": "vfio-pci"}


def test_not_persistent_leaves_files_alone(host):
    root, addrs = host
    p, _res, _k = run(root, [addrs[0]], persistent=False)
    assert not os.path.exists(os.path.join(root, RULES.lstrip("/")))
    assert all(f["action"] == "unchanged" for f in p["files"])


def test_loads_vfio_pci_when_absent(host):
    root, addrs = host
    os.rmdir(os.path.join(root, "sys/bus/pci/drivers/vfio-pci"))
    os.unlink(os.path.join(dev_dir(root, addrs[1]), "driver"))
    p = plan(root, [addrs[0]])
    assert p["load_module"] is True and p["changed"]
    loaded = []

    def modprobe(name):
        loaded.append(name)
        os.makedirs(os.path.join(root, "sys/bus/pci/drivers/vfio-pci"))
    run(root, [addrs[0]], loaded=modprobe)
    assert loaded == ["vfio-pci"] and driver(root, addrs[0]) == "vfio-pci"


def test_bind_verified(host):
    root, addrs = host
    kernel = FakeKernel(root, refuse=("vfio-pci",))
    with pytest.raises(vfio.VfioError, match="on no driver, not vfio-pci") as e:
        run(root, [addrs[0]], kernel=kernel)
    assert e.value.failures[0]["code"] == "bind_failed"
    assert not os.path.exists(os.path.join(root, RULES.lstrip("/")))   # no persistence for a failed bind


def test_override_only_counts_as_change(host):
    root, addrs = host
    _write(os.path.join(dev_dir(root, addrs[1]), "driver_override"), "(null)\n")
    p, _res, kernel = run(root, [addrs[1]])
    assert p["devices"][0]["actions"] == ["set driver_override to vfio-pci"]
    assert [rel for rel, _text in kernel.log] == ["/sys/bus/pci/devices/%s/driver_override" % addrs[1]]


# ---------------------------------------------------------------------------
# safety


def test_refuses_nic_up_with_address(host):
    root, addrs = host
    add_interface(root, addrs[0], "enp0s8", up=True, route="0500A8C0")

    def lookup(names):  # what `ip -j -4 addr` reports
        return {"enp0s8": ["192.0.2.5/24"]}
    scanner = vfio.UsageScanner(sysfs.SysfsReader(root), ipv4_addresses=lookup)
    with pytest.raises(vfio.VfioError) as e:
        vfio.build_plan(sysfs.SysfsReader(root), [addrs[0]], scanner=scanner)
    f = e.value.failures[0]
    assert f["code"] == "network_in_use" and f["interface"] == "enp0s8"
    assert "enp0s8" in str(e.value) and "192.0.2.5/24" in str(e.value) and "192.168.0.5/24" in str(e.value)
    assert "ip link set enp0s8 down" in f["remedy"] and "force: true" in f["remedy"]
    # force takes it anyway
    p = vfio.build_plan(sysfs.SysfsReader(root), [addrs[0]], scanner=scanner, force=True)
    assert p["devices"][0]["actions"]


def test_nic_up_without_address_or_down_is_fine(host):
    root, addrs = host
    add_interface(root, addrs[0], "enp0s8", up=True)
    add_interface(root, addrs[2], "enp0s10", up=False, route="0500A8C0")
    scanner = vfio.UsageScanner(sysfs.SysfsReader(root), ipv4_addresses=lambda n: {})
    vfio.build_plan(sysfs.SysfsReader(root), [addrs[0], addrs[2]], scanner=scanner)


def test_refuses_ipv6_address_on_group_member(host):
    root, addrs = host
    add_interface(root, addrs[5], "enp129s2", ipv6="20010db8000000000000000000000005")
    with pytest.raises(vfio.VfioError) as e:
        plan(root, [addrs[4]])
    msg = str(e.value)
    assert addrs[5] in msg and "member of the IOMMU group of %s" % addrs[4] in msg
    assert "enp129s2" in msg and "2001:0db8" in msg


def test_refuses_mounted_filesystem_and_swap(host):
    root, addrs = host
    add_block(root, addrs[0], "vda", mount="/")
    add_block(root, addrs[2], "nvme0n1", swap=True, sub="nvme/nvme0")
    with pytest.raises(vfio.VfioError) as e:
        plan(root, [addrs[0], addrs[2]])
    codes = [(f["device"], f["code"]) for f in e.value.failures]
    assert codes == [(addrs[0], "backs_storage"), (addrs[2], "backs_storage")]
    assert "/dev/vda mounted on / (ext4)" in str(e.value)
    assert "active swap /dev/nvme0n1" in str(e.value)


def test_refuses_partition_and_device_mapper(host):
    root, addrs = host
    add_block(root, addrs[0], "sda", sub="host0/target0:0:0/0:0:0:0/block")
    part = os.path.join(os.path.realpath(os.path.join(root, "sys/class/block/sda")), "sda1")
    _write(os.path.join(part, "dev"), "8:1\n")
    os.symlink(os.path.relpath(part, os.path.join(root, "sys/class/block")),
               os.path.join(root, "sys/class/block/sda1"))
    dm = os.path.join(root, "sys/devices/virtual/block/dm-0")
    _write(os.path.join(dm, "dev"), "253:0\n")
    os.makedirs(os.path.join(dm, "slaves"))
    os.symlink(os.path.relpath(part, os.path.join(dm, "slaves")), os.path.join(dm, "slaves/sda1"))
    os.symlink(os.path.relpath(dm, os.path.join(root, "sys/class/block")),
               os.path.join(root, "sys/class/block/dm-0"))
    with open(os.path.join(root, "proc/mounts"), "a") as f:
        f.write("/dev/dm-0 /var xfs rw 0 0\n")
    with pytest.raises(vfio.VfioError, match="/dev/dm-0 mounted on /var"):
        plan(root, [addrs[0]])


def test_refuses_9p_transport(host):
    root, addrs = host
    add_9p(root, addrs[2], "/dev/root", "/")
    with pytest.raises(vfio.VfioError, match=r"filesystem /dev/root mounted on / \(9p\)"):
        plan(root, [addrs[2]])


def test_refuses_console_framebuffer(host):
    root, addrs = host
    add_fb(root, addrs[3])
    with pytest.raises(vfio.VfioError) as e:
        plan(root, [addrs[3]])
    assert e.value.failures[0]["code"] == "console" and "/dev/fb0" in str(e.value)
    assert "active console" in str(e.value)


def test_device_already_on_vfio_is_not_checked(host):
    root, addrs = host
    add_interface(root, addrs[1], "ghost", ipv6="20010db8000000000000000000000009")
    assert plan(root, [addrs[1]])["devices"][0]["actions"] == []


# ---------------------------------------------------------------------------
# captured test-bed trees


def test_captured_intel_tree_plan():
    fixture_trees = pytest.importorskip("tests.support.fixture_trees")
    root = fixture_trees.root("intel")
    p = plan(root, ["8086:10d3"])
    assert [d["address"] for d in p["devices"]] == ["0000:00:08.0", "0000:00:09.0"]
    assert all(d["driver_before"] == "e1000e" for d in p["devices"])
    shared = plan(root, ["0000:02:01.0"])
    assert [d["address"] for d in shared["devices"]] == ["0000:02:01.0", "0000:02:02.0"]
    assert shared["devices"][1]["driver_before"] == "e1000"
    with pytest.raises(vfio.VfioError, match="0000:02:02.0 \\(e1000\\)"):
        plan(root, ["0000:02:01.0"], group_policy="refuse")


def test_captured_vfio_tree_is_idempotent():
    fixture_trees = pytest.importorskip("tests.support.fixture_trees")
    root = fixture_trees.root("intel-vfio")
    p = plan(root, ["0000:00:09.0"], persistent=False)
    d = p["devices"][0]
    assert d["driver_before"] == "vfio-pci"
    assert p["changed"] is (d["driver_override_before"] != "vfio-pci")


def test_plan_is_json_serialisable(host):
    root, addrs = host
    json.dumps(plan(root, ["8086:10d3"]))


def test_module_reads_ipv4_from_ip_json():
    from ansible_collections.iommu.host.plugins.modules import vfio_pci as mod

    class FakeModule:
        def __init__(self, rc, out):
            self.rc, self.out, self.argv = rc, out, None

        def get_bin_path(self, name):
            return "/usr/sbin/" + name

        def run_command(self, argv):
            self.argv = argv
            return self.rc, self.out, ""

    out = json.dumps([{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
                      {"ifname": "eth3", "addr_info": [{"family": "inet", "local": "192.0.2.5", "prefixlen": 24},
                                                       {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]}])
    fake = FakeModule(0, out)
    assert mod._ipv4_lookup(fake)(["eth3"]) == {"lo": ["127.0.0.1/8"], "eth3": ["192.0.2.5/24"]}
    assert fake.argv == ["/usr/sbin/ip", "-j", "-4", "addr", "show"]
    assert mod._ipv4_lookup(FakeModule(1, ""))(["eth3"]) is None     # falls back to SIOCGIFADDR


def test_siocgifaddr_fallback_on_the_running_host():
    if not os.path.exists("/sys/class/net/lo"):
        pytest.skip("no loopback interface here")
    found = vfio.UsageScanner(sysfs.SysfsReader("/"))._ipv4_default(["lo"])
    assert found.get("lo", ["127.0.0.1"])[0].startswith("127.")


# ---------------------------------------------------------------------------
# driver: a named VFIO variant driver


def variant_driver(root, name="mlx5_vfio_pci", holds=("vfio_pci_core", "vfio"), loaded=True):
    """A loaded variant driver: /sys/bus/pci/drivers/<name> -> module <name>, a holder of the VFIO core.

    vfio-pci's own module is made a loadable one too, so the VFIO core modules have holders/.
    """
    sysd = os.path.join(root, "sys")
    for core in ("vfio_pci_core", "vfio"):
        os.makedirs(os.path.join(sysd, "module", core, "holders"), exist_ok=True)
    if not loaded:
        return
    drvdir = os.path.join(sysd, "bus/pci/drivers", name)
    moddir = os.path.join(sysd, "module", name.replace("-", "_"))
    os.makedirs(os.path.join(moddir, "holders"), exist_ok=True)
    os.makedirs(drvdir, exist_ok=True)
    os.symlink(os.path.relpath(moddir, drvdir), os.path.join(drvdir, "module"))
    for core in holds:
        hold = os.path.join(sysd, "module", core, "holders", name.replace("-", "_"))
        os.symlink(os.path.relpath(moddir, os.path.dirname(hold)), hold)


class VfioKernel(FakeKernel):
    """FakeKernel whose VFIO drivers also register the VFIO device (vfio-dev/vfioN) on probe."""

    vfio_drivers = ("vfio-pci", "mlx5_vfio_pci")

    def write_attr(self, rel, text):
        super(VfioKernel, self).write_attr(rel, text)
        parts = rel.strip("/").split("/")
        if parts[-2:] == ["driver", "unbind"]:
            shutil.rmtree(os.path.join(self._dev(text.strip()), "vfio-dev"), ignore_errors=True)
        if rel == "/sys/bus/pci/drivers_probe":
            d = self._dev(text.strip())
            if os.path.basename(os.readlink(os.path.join(d, "driver"))) in self.vfio_drivers:
                _write(os.path.join(d, "vfio-dev", "vfio9", "dev"), "511:9\n")


def test_bind_to_variant_driver_with_persistence(host):
    root, addrs = host
    variant_driver(root)
    check = plan(root, [addrs[0]], driver="mlx5_vfio_pci")
    assert check["driver_check"]["vfio"] is True
    assert check["driver_check"]["evidence"] == ["/sys/module/vfio_pci_core/holders/mlx5_vfio_pci",
                                                 "/sys/module/vfio/holders/mlx5_vfio_pci"]
    assert check["devices"][0]["actions"] == ["set driver_override to mlx5_vfio_pci", "unbind from e1000e",
                                              "probe (mlx5_vfio_pci takes the device)"]
    p, res, kernel = run(root, [addrs[0]], kernel=VfioKernel(root), driver="mlx5_vfio_pci")
    assert check == p and p["load_module"] is False
    assert driver(root, addrs[0]) == "mlx5_vfio_pci" and res[0]["driver_after"] == "mlx5_vfio_pci"
    base = "/sys/bus/pci/devices/%s" % addrs[0]
    assert kernel.log[0] == (base + "/driver_override", "mlx5_vfio_pci")   # driverctl parity
    rules = open(os.path.join(root, RULES.lstrip("/"))).read()
    assert 'KERNEL=="%s", ATTR{driver_override}="mlx5_vfio_pci"' % addrs[0] in rules
    assert 'DRIVER!="mlx5_vfio_pci"' in rules
    assert "original-driver=e1000e driver=mlx5_vfio_pci" in rules
    assert open(os.path.join(root, MODULES.lstrip("/"))).read().splitlines()[1:] == ["mlx5_vfio_pci"]
    managed = vfio.read_managed(sysfs.SysfsReader(root), RULES)
    assert managed[addrs[0]] == {"ids": "8086:10d3", "original_driver": "e1000e", "driver": "mlx5_vfio_pci"}
    # the reader sees a variant now; a second run changes nothing
    dev = sysfs.SysfsReader(root).pci_devices()[addrs[0]]
    assert dev["vfio"]["variant"] is True and dev["vfio"]["bound"] is True
    assert plan(root, [addrs[0]], driver="mlx5_vfio_pci")["changed"] is False
    # vfio-pci and the variant together: both modules at boot, vfio-pci first
    run(root, [addrs[2]], kernel=VfioKernel(root))
    assert open(os.path.join(root, MODULES.lstrip("/"))).read().splitlines()[1:] == ["vfio-pci", "mlx5_vfio_pci"]
    # release: back to e1000e, the rule entry goes
    rel = plan(root, [addrs[0]], state="absent")
    assert rel["devices"][0]["actions"] == ["clear driver_override (mlx5_vfio_pci)", "unbind from mlx5_vfio_pci",
                                            "probe (the default driver takes the device)"]
    assert rel["devices"][0]["driver_after"] == "e1000e"
    p, res, _k = run(root, [addrs[0]], kernel=VfioKernel(root), state="absent")
    assert res[0]["restored_to"] == "e1000e" == driver(root, addrs[0])
    assert open(os.path.join(root, MODULES.lstrip("/"))).read().splitlines()[1:] == ["vfio-pci"]


def test_variant_from_vfio_pci_needs_no_safety_check(host):
    root, addrs = host
    variant_driver(root)
    add_interface(root, addrs[1], "ghost", ipv6="20010db8000000000000000000000009")
    p = plan(root, [addrs[1]], driver="mlx5_vfio_pci")
    assert p["devices"][0]["actions"] == ["set driver_override to mlx5_vfio_pci", "unbind from vfio-pci",
                                          "probe (mlx5_vfio_pci takes the device)"]


def test_variant_keeps_safety_refusals(host):
    root, addrs = host
    variant_driver(root)
    add_interface(root, addrs[0], "eth0", ipv6="20010db8000000000000000000000001")
    with pytest.raises(vfio.VfioError) as e:
        plan(root, [addrs[0]], driver="mlx5_vfio_pci")
    assert e.value.failures[0]["code"] == "network_in_use"


def test_variant_group_members_go_to_vfio_pci(host):
    root, addrs = host
    variant_driver(root)
    p = plan(root, [addrs[4]], driver="mlx5_vfio_pci")
    assert [(d["address"], d["driver_target"]) for d in p["devices"]] == [(addrs[4], "mlx5_vfio_pci"),
                                                                          (addrs[5], "vfio-pci")]
    with pytest.raises(vfio.VfioError, match="group_policy"):
        plan(root, [addrs[4]], driver="mlx5_vfio_pci", group_policy="refuse")


def test_refuses_a_driver_that_is_not_vfio(host):
    root, addrs = host
    variant_driver(root, name="e1000e_lookalike", holds=())
    with pytest.raises(vfio.VfioError) as e:
        plan(root, [addrs[0]], driver="e1000e_lookalike")
    f = e.value.failures[0]
    assert f["code"] == "not_vfio_driver" and "not a holder of vfio_pci_core or vfio" in f["message"]
    assert "VFIO variant driver" in f["remedy"]
    assert driver(root, addrs[0]) == "e1000e"


@pytest.mark.parametrize("name", ["../../evil", "a/b", "", "x" * 80, "vfio pci"])
def test_refuses_names_that_are_not_driver_names(host, name):
    root, addrs = host
    with pytest.raises(vfio.VfioError) as e:
        plan(root, [addrs[0]], driver=name)
    assert e.value.failures[0]["code"] == "bad_driver"


def test_loads_an_absent_variant_driver_and_checks_it(host):
    root, addrs = host
    variant_driver(root, loaded=False)
    p = plan(root, [addrs[0]], driver="mlx5_vfio_pci")
    assert p["modules_to_load"] == ["mlx5_vfio_pci"] and p["load_module"] is True
    assert p["driver_check"]["vfio"] is None and "not loaded" in p["driver_check"]["reason"]
    loaded = []

    def modprobe(name):
        loaded.append(name)
        shutil.rmtree(os.path.join(root, "sys/module/vfio_pci_core"))
        shutil.rmtree(os.path.join(root, "sys/module/vfio"))
        variant_driver(root)
    _p, res, _k = run(root, [addrs[0]], kernel=VfioKernel(root), loaded=modprobe, driver="mlx5_vfio_pci")
    assert loaded == ["mlx5_vfio_pci"] and res[0]["driver_after"] == "mlx5_vfio_pci"


def test_modprobe_of_a_non_vfio_driver_is_caught_before_binding(host):
    root, addrs = host
    variant_driver(root, loaded=False)

    def modprobe(name):
        shutil.rmtree(os.path.join(root, "sys/module/vfio_pci_core"))
        shutil.rmtree(os.path.join(root, "sys/module/vfio"))
        variant_driver(root, name=name, holds=())
    with pytest.raises(vfio.VfioError) as e:
        run(root, [addrs[0]], loaded=modprobe, driver="not_vfio")
    assert e.value.failures[0]["code"] == "not_vfio_driver"
    assert driver(root, addrs[0]) == "e1000e"


def test_builtin_driver_cannot_be_told_and_is_verified(host):
    """A built-in driver has no holders/: the plan says it cannot tell, the bind is checked after."""
    root, addrs = host
    os.makedirs(os.path.join(root, "sys/bus/pci/drivers/builtin_vfio_pci"))
    p = plan(root, [addrs[0]], driver="builtin_vfio_pci")
    assert p["driver_check"]["vfio"] is None and "cannot tell" in p["driver_check"]["reason"]
    kernel = FakeKernel(root, refuse=("builtin_vfio_pci",))
    with pytest.raises(vfio.VfioError, match="not builtin_vfio_pci, after the probe"):
        run(root, [addrs[0]], kernel=kernel, driver="builtin_vfio_pci")
