"""Build synthetic sysfs/procfs trees shaped like the kernel's, for tests and benchmarks.

The layout follows what the kernel creates (see docs/facts.md): device
directories under /sys/devices, relative symlinks from /sys/bus/pci/devices,
/sys/class/iommu and /sys/kernel/iommu_groups, exactly as captured from the
test-bed guests in tests/fixtures/sysfs/.
"""
import os

VTD_CAP = 0xD2008C22260286   # QEMU intel-iommu (test bed `intel` profile)
VTD_ECAP = 0xF00F4A
AMD_EFR = 0x29D3             # QEMU amd-iommu (test bed `amd` profile)


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(os.path.relpath(target, os.path.dirname(path)), path)


def pci_address(i):
    return "0000:%02x:%02x.%d" % (i // 32 + 1, i % 32, 0)


def build(root, n_devices=8, n_units=1, vendor="intel", vfio=(0,), bridge_groups=0,
          cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on iommu=pt",
          release="7.3.4-iommu-host", interrupt_remapping=True, holders=None, uevent=True):
    """Create a tree with ``n_devices`` PCI endpoints spread over ``n_units`` IOMMU units.

    ``vfio``: indexes of devices bound to vfio-pci (with a VFIO cdev); the rest
    are bound to e1000e. ``bridge_groups``: that many extra groups holding a
    conventional-PCI bridge plus two endpoints (a shared group).
    ``holders``: {pid: [fd target, ...]} to fake /proc/<pid>/fd links.
    ``uevent``: write each device's uevent file (without it, readers fall back to
    the separate attribute files).
    Returns the list of device addresses.
    """
    sysd = os.path.join(root, "sys")
    _write(os.path.join(root, "proc/cmdline"), cmdline + "\n")
    _write(os.path.join(root, "proc/sys/kernel/osrelease"), release + "\n")
    chip = "IR-PCI-MSIX-0000:00:09.0" if interrupt_remapping else "PCI-MSIX-0000:00:09.0"
    _write(os.path.join(root, "proc/interrupts"),
           "           CPU0\n  0:         10   IO-APIC   2-edge      timer\n"
           " 24:        100   %s 0-edge      eth0\n" % chip)
    _write(os.path.join(root, "proc/modules"), "")
    _write(os.path.join(root, "dev/iommu"), "")
    os.makedirs(os.path.join(root, "dev/vfio/devices"), exist_ok=True)
    for table in (("DMAR",) if vendor == "intel" else ("IVRS",)):
        _write(os.path.join(sysd, "firmware/acpi/tables", table), "X" * 80)
    for drv in ("vfio-pci", "e1000e", "pcieport"):
        os.makedirs(os.path.join(sysd, "bus/pci/drivers", drv), exist_ok=True)
    os.makedirs(os.path.join(sysd, "module/iommufd/parameters"), exist_ok=True)
    _write(os.path.join(sysd, "module/iommufd/parameters/allow_unsafe_interrupts"), "N\n")

    units = []
    for u in range(n_units):
        if vendor == "intel":
            name = "dmar%d" % u
            udir = os.path.join(sysd, "devices/virtual/iommu", name)
            _write(os.path.join(udir, "intel-iommu/cap"), "%x\n" % VTD_CAP)
            _write(os.path.join(udir, "intel-iommu/ecap"), "%x\n" % VTD_ECAP)
            _write(os.path.join(udir, "intel-iommu/version"), "1:0\n")
            _write(os.path.join(udir, "intel-iommu/address"), "%x\n" % (0xfed90000 + u * 0x1000))
        else:
            name = "ivhd%d" % u
            udir = os.path.join(sysd, "devices/pci0000:00/0000:00:%02x.2/iommu" % u, name)
            _write(os.path.join(udir, "amd-iommu/cap"), "190b3\n")
            _write(os.path.join(udir, "amd-iommu/features"), "%x:0\n" % AMD_EFR)
        _link(os.path.join(sysd, "class/iommu", name), udir)
        units.append((name, udir))

    vfio = set(vfio)
    addresses = []
    n_groups = 0

    def add_device(addr, gid, driver, cls="0x020000", unit=None):
        ddir = os.path.join(sysd, "devices/pci0000:00", addr)
        for f, v in (("vendor", "0x8086"), ("device", "0x10d3"), ("subsystem_vendor", "0x8086"),
                     ("subsystem_device", "0x0000"), ("class", cls), ("revision", "0x00"),
                     ("driver_override", "vfio-pci" if driver == "vfio-pci" else "(null)")):
            _write(os.path.join(ddir, f), v + "\n")
        if uevent:  # drivers/pci/pci-driver.c pci_uevent (+ DRIVER= from the driver core)
            _write(os.path.join(ddir, "uevent"),
                   ("DRIVER=%s\n" % driver if driver else "")
                   + "PCI_CLASS=%X\nPCI_ID=8086:10D3\nPCI_SUBSYS_ID=8086:0000\nPCI_SLOT_NAME=%s\n"
                     "MODALIAS=pci:v00008086d000010D3sv00008086sd00000000bc%02Xsc%02Xi%02X\n"
                   % (int(cls, 16), addr, int(cls, 16) >> 16, (int(cls, 16) >> 8) & 0xff, int(cls, 16) & 0xff))
        _link(os.path.join(sysd, "bus/pci/devices", addr), ddir)
        if driver:
            _link(os.path.join(ddir, "driver"), os.path.join(sysd, "bus/pci/drivers", driver))
        gdir = os.path.join(sysd, "kernel/iommu_groups", str(gid))
        _link(os.path.join(ddir, "iommu_group"), gdir)
        _link(os.path.join(gdir, "devices", addr), ddir)
        uname, udir = unit
        _link(os.path.join(ddir, "iommu"), udir)
        _link(os.path.join(udir, "devices", addr), ddir)
        return ddir

    def new_group(gid):
        gdir = os.path.join(sysd, "kernel/iommu_groups", str(gid))
        _write(os.path.join(gdir, "type"), "DMA-FQ\n")
        _write(os.path.join(gdir, "reserved_regions"),
               "0x00000000fee00000 0x00000000feefffff msi\n")
        os.makedirs(os.path.join(gdir, "devices"), exist_ok=True)

    cdev = 0
    for i in range(n_devices):
        addr = pci_address(i)
        new_group(n_groups)
        driver = "vfio-pci" if i in vfio else "e1000e"
        ddir = add_device(addr, n_groups, driver, unit=units[i % n_units])
        if driver == "vfio-pci":
            name = "vfio%d" % cdev
            _write(os.path.join(ddir, "vfio-dev", name, "dev"), "511:%d\n" % cdev)
            _write(os.path.join(root, "dev/vfio/devices", name), "")
            _link(os.path.join(sysd, "class/vfio-dev", name), os.path.join(ddir, "vfio-dev", name))
            _link(os.path.join(ddir, "vfio-dev", name, "device"), ddir)
            cdev += 1
        else:
            _write(os.path.join(ddir, "net/eth%d/operstate" % i), "up\n")
        addresses.append(addr)
        n_groups += 1
    for b in range(bridge_groups):
        new_group(n_groups)
        bus = 0x80 + b
        add_device("0000:%02x:00.0" % bus, n_groups, None, cls="0x060400", unit=units[0])
        for fn in (1, 2):
            addr = "0000:%02x:%02x.0" % (bus + 1, fn)
            add_device(addr, n_groups, "e1000e", unit=units[0])
            addresses.append(addr)
        n_groups += 1
    for pid, targets in (holders or {}).items():
        _write(os.path.join(root, "proc", str(pid), "comm"), "qemu-system-x86\n")
        fd_dir = os.path.join(root, "proc", str(pid), "fd")
        os.makedirs(fd_dir, exist_ok=True)
        for n, target in enumerate(targets):
            os.symlink(target, os.path.join(fd_dir, str(n + 3)))
    return addresses
