# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel interface: sysfs and procfs readers.

Every reader works below a root directory (``/`` on a real host, a fixture
tree in tests) and never raises: a file that is missing is ``None``, a file
that cannot be read or parsed becomes an entry in ``SysfsReader.errors``.
Nothing here opens a device or writes anything. Stdlib only.
"""

from __future__ import absolute_import, division, print_function

import errno
import gzip
import os
import re

from ansible_collections.iommu.host.plugins.module_utils.iommu_memory import parse_numa_node

__metaclass__ = type

# Kernel options that decide whether the IOMMU, iommufd and VFIO cdev work.
CONFIG_KEYS = (
    "CONFIG_IOMMUFD", "CONFIG_IOMMUFD_TEST", "CONFIG_VFIO", "CONFIG_VFIO_DEVICE_CDEV",
    "CONFIG_VFIO_GROUP", "CONFIG_VFIO_CONTAINER", "CONFIG_VFIO_NOIOMMU", "CONFIG_VFIO_PCI",
    "CONFIG_INTEL_IOMMU", "CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON",
    "CONFIG_INTEL_IOMMU_DEFAULT_ON", "CONFIG_AMD_IOMMU", "CONFIG_AMD_IOMMU_IOMMUFD",
    "CONFIG_ARM_SMMU_V3", "CONFIG_ARM_SMMU_V3_IOMMUFD", "CONFIG_TEGRA241_CMDQV",
    "CONFIG_VIRTIO_IOMMU", "CONFIG_IRQ_REMAP", "CONFIG_IOMMU_DEFAULT_PASSTHROUGH",
    "CONFIG_IOMMU_DEFAULT_DMA_LAZY", "CONFIG_IOMMU_DEFAULT_DMA_STRICT", "CONFIG_PCI_ATS",
    "CONFIG_PCI_PASID", "CONFIG_PCI_PRI",
)

# modules.builtin entries for the pieces that can be modules.
BUILTIN_MODULES = {
    "iommufd": "drivers/iommu/iommufd/iommufd.ko",
    "vfio": "drivers/vfio/vfio.ko",
    "vfio_pci": "drivers/vfio/pci/vfio-pci.ko",
    "vfio_pci_core": "drivers/vfio/pci/vfio-pci-core.ko",
    "vfio_iommu_type1": "drivers/vfio/vfio_iommu_type1.ko",
}

# Kernel command line arguments that concern the IOMMU, VFIO and iommufd
# (Documentation/admin-guide/kernel-parameters.txt).
CMDLINE_KEYS = (
    "intel_iommu", "amd_iommu", "amd_iommu_intr", "amd_iommu_dump", "iommu", "iommu.passthrough",
    "iommu.strict", "iommu.forcedac", "iommu.debug_pagealloc", "intremap", "nointremap",
    "iommufd.allow_unsafe_interrupts", "vfio_iommu_type1.allow_unsafe_interrupts",
    "vfio.enable_unsafe_noiommu_mode", "vfio_pci.ids", "vfio-pci.ids", "vfio_pci.disable_idle_d3",
    "vfio_pci.disable_vga", "vfio_pci.disable_denylist", "pci", "pcie_acs_override",
    "modprobe.blacklist", "module_blacklist", "rd.driver.pre", "rd.driver.blacklist", "x2apic_phys",
    "nox2apic", "sme", "mem_encrypt",
)

PCI_BRIDGE_CLASS = 0x0604
PCI_HOST_BRIDGE_CLASS = 0x0600

_VFIO_DRIVERS = ("vfio-pci", "pci-stub")

# The one VFIO PCI driver known by name: vfio-pci itself (drivers/vfio/pci/vfio_pci.c).
# Variant drivers are recognised from the kernel (vfio_binding), not from names.
VFIO_PCI = "vfio-pci"
# Modules every VFIO driver links against: a loaded driver module that holds one of
# them (/sys/module/<core>/holders/<module>) is a VFIO driver.
VFIO_CORE_MODULES = ("vfio_pci_core", "vfio")

_PCI_ATTRS = ("vendor", "device", "subsystem_vendor", "subsystem_device", "class")

# What `uname -r` can print; anything else is not used to build paths.
_RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")

# [domain:]bus:device.function, as sysfs names PCI devices.
PCI_ADDRESS_RE = re.compile(r"^([0-9a-fA-F]{4,}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


class SysfsReader:
    """Reads what the kernel exposes about IOMMUs below ``root``."""

    def __init__(self, root="/"):
        self.root = root
        self.errors = []

    # -- primitives ---------------------------------------------------------

    def path(self, rel):
        return os.path.join(self.root, rel.lstrip("/"))

    def _error(self, rel, message):
        self.errors.append({"path": "/" + rel.lstrip("/"), "error": message})

    def read(self, rel, limit=1 << 20):
        """Text of a file, stripped; None when absent or unreadable (recorded)."""
        try:
            fd = os.open(self.path(rel), os.O_RDONLY)
        except ValueError as e:  # a NUL byte in a path built from file contents
            self._error(rel, str(e))
            return None
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._error(rel, os.strerror(e.errno))
            return None
        try:
            data = os.read(fd, limit)
        except OSError as e:
            self._error(rel, os.strerror(e.errno))
            return None
        finally:
            os.close(fd)
        return data.decode("utf-8", "replace").strip()

    def read_bytes(self, rel, limit=1 << 20):
        try:
            with open(self.path(rel), "rb") as f:
                return f.read(limit)
        except ValueError as e:
            self._error(rel, str(e))
            return None
        except (IOError, OSError) as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._error(rel, os.strerror(e.errno))
            return None

    def link_name(self, rel):
        """Basename of a symlink's target (e.g. the driver name), None if absent."""
        try:
            return os.path.basename(os.readlink(self.path(rel)))
        except OSError:
            return None

    def realpath(self, rel):
        return os.path.realpath(self.path(rel))

    def listdir(self, rel):
        try:
            return sorted(os.listdir(self.path(rel)))
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._error(rel, os.strerror(e.errno))
            return []

    def exists(self, rel):
        return os.path.lexists(self.path(rel))

    # -- kernel -------------------------------------------------------------

    def kernel_release(self):
        release = self.read("/proc/sys/kernel/osrelease")
        if release is None and self.root in ("/", ""):
            release = os.uname()[2]
        if release is not None and not _RELEASE_RE.match(release):
            self._error("/proc/sys/kernel/osrelease", "not a kernel release: %r" % release[:80])
            return None
        return release

    def cmdline(self):
        """/proc/cmdline parsed: raw text, IOMMU-related arguments and what they mean."""
        raw = self.read("/proc/cmdline")
        args = {}
        for token in _split_cmdline(raw or ""):
            key, sep, value = token.partition("=")
            if key.replace("-", "_") in CMDLINE_KEYS or key in CMDLINE_KEYS:
                args.setdefault(key, []).append(value if sep else True)
        return {"raw": raw, "args": args, "effects": cmdline_effects(args), "source": "/proc/cmdline"}

    def kernel_config(self, release):
        """Relevant CONFIG_* values from /boot/config-<release> or /proc/config.gz."""
        candidates = []
        if release:
            candidates.append("/boot/config-%s" % release)
            candidates.append("/lib/modules/%s/config" % release)
        candidates.append("/proc/config.gz")
        for rel in candidates:
            data = self.read_bytes(rel, limit=16 << 20)
            if data is None:
                continue
            if rel.endswith(".gz"):
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError, ValueError) as e:
                    self._error(rel, "cannot decompress: %s" % e)
                    continue
            return {"values": parse_kconfig(data.decode("utf-8", "replace")), "source": rel}
        return {"values": {}, "source": None}

    def builtin_modules(self, release):
        if not release:
            return None
        text = self.read("/lib/modules/%s/modules.builtin" % release, limit=4 << 20)
        if text is None:
            return None
        lines = set(line.strip() for line in text.splitlines())
        found = {}
        for name, ko in BUILTIN_MODULES.items():
            found[name] = ko in lines or ("kernel/" + ko) in lines
        return found

    def module_state(self, name):
        """'loaded' (in /proc/modules), 'builtin' (/sys/module only) or None."""
        modules = self._proc_modules()
        if name in modules:
            return "loaded"
        if self.exists("/sys/module/%s" % name):
            return "builtin"
        return None

    def _proc_modules(self):
        if not hasattr(self, "_modules_cache"):
            text = self.read("/proc/modules") or ""
            self._modules_cache = set(line.split(" ", 1)[0] for line in text.splitlines() if line)
        return self._modules_cache

    def module_param(self, module, param):
        return self.read("/sys/module/%s/parameters/%s" % (module, param))

    def interrupt_remapping(self):
        """Whether MSIs are remapped/isolated, read from the irq chip names in /proc/interrupts.

        The kernel names a device's MSI chip after its parent MSI domain (msi_parent_ops.prefix):
        x86 interrupt remapping gives IR-PCI-MSI* / IR-IO-APIC (INTEL-IR / AMD-IR parents), an Arm
        GICv3/v5 ITS gives ITS-PCI-MSI* / ITS-v5-* - the domains flagged IRQ_DOMAIN_FLAG_ISOLATED_MSI
        (intel/irq_remapping.c, amd/iommu.c, irq-gic-v3-its.c, irq-gic-v5-its.c), which is what
        iommufd checks (iommu_group_has_isolated_msi). Without isolation the chips are plain
        PCI-MSI* / IO-APIC (x86) or GICv2m-* / MBI-* (Arm: no device ID in the MSI, nothing to
        isolate with). ``mechanism``: interrupt_remapping, gicv3_its or null. On a device-tree
        system ``its_nodes`` lists the ITS nodes; an ITS with a Socionext pre-ITS
        (socionext,synquacer-pre-its) does not isolate MSIs (irq-gic-v3-its.c clears the flag).
        """
        text = self.read("/proc/interrupts", limit=8 << 20)
        its_nodes, pre_its = self._dt_its_nodes()
        if text is None:
            return {"enabled": None, "source": None, "evidence": [], "mechanism": None,
                    "its_nodes": its_nodes}
        chips = set()
        for line in text.splitlines()[1:]:
            for word in line.split():
                if word.startswith(("IR-", "PCI-MSI", "IO-APIC", "ITS-", "INTEL-IR", "AMD-IR",
                                    "DMAR-MSI", "AMD-Vi", "GICv2m-", "MBI-")):
                    chips.add(word)
        remapped = sorted(c for c in chips if c.startswith("IR-"))
        its = sorted(c for c in chips if c.startswith("ITS-"))
        plain_msi = sorted(c for c in chips if c.startswith(("PCI-MSI", "IO-APIC", "GICv2m-", "MBI-")))
        source = "/proc/interrupts"
        mechanism = None
        if remapped:
            enabled, mechanism = True, "interrupt_remapping"
        elif its and pre_its:
            enabled, mechanism = False, "gicv3_its"
            source = "/proc/interrupts, /sys/firmware/devicetree"
        elif its:
            enabled, mechanism = True, "gicv3_its"
        elif plain_msi:
            enabled = False
        else:
            enabled = None
        out = {"enabled": enabled, "source": source, "mechanism": mechanism,
               "evidence": remapped or its or plain_msi, "its_nodes": its_nodes}
        if pre_its:
            out["pre_its"] = pre_its
        return out

    def _dt_its_nodes(self):
        """Device-tree GIC ITS nodes (/<interrupt-controller>/<its>, compatible arm,gic-v3-its) and
        the ones behind a Socionext pre-ITS (no MSI isolation). ([], []) without a device tree."""
        base = "/sys/firmware/devicetree/base"
        nodes, pre_its = [], []
        for top in self.listdir(base):
            if not top.startswith(("intc", "interrupt-controller")):
                continue
            for child in self.listdir("%s/%s" % (base, top)):
                compat = self.read("%s/%s/%s/compatible" % (base, top, child), limit=4096) or ""
                if "arm,gic-v3-its" not in compat.split("\0"):
                    continue
                name = "/%s/%s" % (top, child)
                nodes.append(name)
                if self.exists("%s%s/socionext,synquacer-pre-its" % (base, name)):
                    pre_its.append(name)
        return sorted(nodes), sorted(pre_its)

    def dev_nodes(self):
        cdevs = self.listdir("/dev/vfio/devices")
        groups = [n for n in self.listdir("/dev/vfio") if n not in ("devices", "vfio")]
        return {
            "iommu": self.exists("/dev/iommu"),
            "vfio_container": self.exists("/dev/vfio/vfio"),
            "vfio_cdevs": cdevs,
            "vfio_groups": groups,
        }

    # -- firmware -----------------------------------------------------------

    def firmware(self):
        tables = {}
        for name in ("DMAR", "IVRS", "IORT"):
            rel = "/sys/firmware/acpi/tables/%s" % name
            present = self.exists(rel)
            size = None
            if present:
                try:
                    size = os.stat(self.path(rel)).st_size
                except OSError:
                    size = None
            tables[name.lower()] = {"present": present, "size": size}
        dt = self.exists("/sys/firmware/devicetree/base")
        dt_iommus = []
        if dt:
            for node in self.listdir("/sys/firmware/devicetree/base"):
                if "iommu" in node or "smmu" in node:
                    dt_iommus.append(node)
        return {
            "acpi": tables,
            "devicetree": {"present": dt, "iommu_nodes": dt_iommus},
            "source": "/sys/firmware",
        }

    # -- IOMMU units, groups, devices --------------------------------------

    def units(self):
        """Entries of /sys/class/iommu with their raw registers (hex strings as the kernel prints)."""
        units = {}
        for name in self.listdir("/sys/class/iommu"):
            base = "/sys/class/iommu/%s" % name
            unit = {"name": name, "vendor": unit_vendor(name, self.listdir(base)), "sysfs": base}
            if unit["vendor"] == "intel_vtd":
                sub = base + "/intel-iommu"
                unit["registers"] = {
                    "cap": self.read(sub + "/cap"),
                    "ecap": self.read(sub + "/ecap"),
                    "version": self.read(sub + "/version"),
                    "address": self.read(sub + "/address"),
                    "domains_supported": self.read(sub + "/domains_supported"),
                    "domains_used": self.read(sub + "/domains_used"),
                }
            elif unit["vendor"] == "arm_smmuv3":
                # arm-smmu-v3 registers its unit with no attribute groups (iommu_device_sysfs_add(...,
                # NULL, "smmu3.%pa")): IDR0-5, IIDR and AIDR are readable only through IOMMU_GET_HW_INFO.
                unit["registers"] = {}
                unit["registers_note"] = SMMUV3_NO_SYSFS_REGISTERS
            elif unit["vendor"] == "amd":
                sub = base + "/amd-iommu"
                features = self.read(sub + "/features")
                efr, efr2, problem = parse_amd_features(features)
                if problem:
                    self._error(sub + "/features", problem)
                unit["registers"] = {"cap": self.read(sub + "/cap"), "features": features,
                                     "efr": efr, "efr2": efr2}
            unit["devices"] = self.listdir(base + "/devices")
            units[name] = unit
        return units

    def groups(self, pci_devices=None):
        """IOMMU groups: default domain type, name, members, reserved regions.

        ``pci_devices`` (from pci_devices()) lets the members of groups that hold
        PCI functions come from the functions' iommu_group links instead of one
        directory listing per group: the kernel puts PCI functions only in groups
        of PCI functions (drivers/iommu/iommu.c pci_device_group: DMA aliases and
        ACS), so those links are the whole membership. Other groups are listed.
        """
        by_group = {}
        for addr, dev in (pci_devices or {}).items():
            if dev.get("iommu_group"):
                by_group.setdefault(dev["iommu_group"], []).append(addr)
        groups = {}
        top = "/sys/kernel/iommu_groups"
        for gid, rel, scan in self.scan_all(top, ("type", "name", "reserved_regions"), (), ()):
            if scan is None:
                continue
            attr = scan[0]
            members = sorted(by_group[gid]) if gid in by_group else self.listdir(rel + "/devices")
            regions, problems = parse_reserved_regions(attr["reserved_regions"])
            for p in problems:
                self._error(rel + "/reserved_regions", p)
            groups[gid] = {
                "id": gid,
                "type": attr["type"],
                "name": attr["name"],
                "devices": members,
                "reserved_regions": regions,
            }
        return groups

    def scan_all(self, top, files, links, subdirs):
        """scan_dir() of every entry of ``top``: [(name, rel, scan)] in name order."""
        out = []
        for name in self.listdir(top):
            rel = "%s/%s" % (top, name)
            out.append((name, rel, self.scan_dir(rel, files, links, subdirs)))
        return out

    def scan_dir(self, rel, files, links, subdirs):
        """Read a sysfs directory's attributes: (files, link names, subdir listings).

        Everything is opened relative to the directory (no path walk per
        attribute); an absent entry costs one failed system call and is None / [].
        None when the directory itself cannot be opened (recorded).
        """
        try:
            dfd = os.open(self.path(rel), os.O_RDONLY | os.O_DIRECTORY)
        except (OSError, ValueError) as e:
            self._error(rel, getattr(e, "strerror", None) or str(e))
            return None
        try:
            attrs = dict((n, self._read_at(dfd, n, rel)) for n in files)
            targets = dict((n, self._link_at(dfd, n)) for n in links)
            listings = dict((n, self._listdir_at(dfd, n, rel)) for n in subdirs)
        finally:
            os.close(dfd)
        return attrs, targets, listings

    def _read_at(self, dfd, name, rel):
        """Like read(), relative to an open directory (no path walk per attribute)."""
        try:
            fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._error(rel + "/" + name, os.strerror(e.errno))
            return None
        try:
            return os.read(fd, 4096).decode("utf-8", "replace").strip()
        except OSError as e:
            self._error(rel + "/" + name, os.strerror(e.errno))
            return None
        finally:
            os.close(fd)

    @staticmethod
    def _link_at(dfd, name):
        try:
            return os.path.basename(os.readlink(name, dir_fd=dfd))
        except OSError:
            return None

    def pci_devices(self):
        """PCI devices with ids, class, driver, IOMMU unit and group, VFIO cdev.

        The hot path of fact gathering (thousands of devices on large hosts): the
        ids and class come from one read of the device's ``uevent``
        (drivers/pci/pci-driver.c pci_uevent: PCI_CLASS, PCI_ID, PCI_SUBSYS_ID);
        the separate attribute files are read only when uevent lacks them.
        """
        devices = {}
        top = "/sys/bus/pci/devices"
        for addr, rel, scan in self.scan_all(top, ("uevent", "driver_override", "numa_node"),
                                             ("driver", "iommu", "iommu_group", "physfn"), ("vfio-dev", "net")):
            if scan is None:
                continue
            attr, links, subdirs = scan
            ids = parse_pci_uevent(attr["uevent"])
            if ids is None:
                fallback = self.scan_dir(rel, _PCI_ATTRS, (), ())
                if fallback is None:
                    continue
                ids = fallback[0]
            vfio, net = subdirs["vfio-dev"], subdirs["net"]
            cls = _hex_int(ids["class"])
            if ids["class"] is not None and cls is None:
                self._error(rel + "/class", "not an integer: %r" % ids["class"][:80])
            override = attr["driver_override"]
            devices[addr] = {
                "address": addr,
                "vendor_id": _hex4(ids["vendor"]),
                "device_id": _hex4(ids["device"]),
                "subsystem_vendor_id": _hex4(ids["subsystem_vendor"]),
                "subsystem_device_id": _hex4(ids["subsystem_device"]),
                "class": "0x%06x" % cls if cls is not None else None,
                "is_bridge": cls is not None and (cls >> 8) in (PCI_BRIDGE_CLASS, PCI_HOST_BRIDGE_CLASS),
                "driver": links["driver"],   # the binding itself (uevent's DRIVER= is not read)
                "driver_override": None if override in (None, "(null)", "") else override,
                "iommu_unit": links["iommu"],
                "iommu_group": links["iommu_group"],
                "vfio_cdev": vfio[0] if vfio else None,
                "physfn": links["physfn"],
                "net_interfaces": net,
                # NUMA node the firmware puts the device on; -1 (none, single-node hosts) -> null
                "numa_node": parse_numa_node(attr["numa_node"]),
            }
            devices[addr]["vfio"] = self._vfio_binding("pci", addr, links["driver"], vfio)
        self._vfio_group_evidence(devices, "/sys/bus/pci/devices")
        return devices

    # -- VFIO drivers -------------------------------------------------------

    def driver_module(self, bus, driver):
        """Module of a bound driver (/sys/bus/<bus>/drivers/<driver>/module), cached; None if unknown.

        Built-in drivers registered with a module name have the link too; their
        /sys/module/<name> has no holders/ directory.
        """
        cache = self.__dict__.setdefault("_driver_modules", {})
        key = (bus, driver)
        if key not in cache:
            cache[key] = self.link_name("/sys/bus/%s/drivers/%s/module" % (bus, driver)) if driver else None
        return cache[key]

    def module_holders(self, module):
        """Names in /sys/module/<module>/holders (modules that link against it), cached."""
        cache = self.__dict__.setdefault("_holders", {})
        if module not in cache:
            cache[module] = set(self.listdir("/sys/module/%s/holders" % module))
        return cache[module]

    def _vfio_binding(self, bus, name, driver, vfio_dev):
        module = self.driver_module(bus, driver)
        held = []
        if module:
            held = [core for core in VFIO_CORE_MODULES if module in self.module_holders(core)]
        base = "/sys/bus/%s/devices/%s" % (bus, name)
        return vfio_binding(driver, vfio_dev, module, held, source="sysfs:%s" % base)

    def _vfio_group_evidence(self, devices, top):
        """A driver-bound device with no other evidence, alone with a driver in its IOMMU group,
        whose group has a VFIO group node /dev/vfio/<group>: only a VFIO driver creates that node
        (CONFIG_VFIO_GROUP), so the device's driver is one."""
        with_driver = {}
        for dev in devices.values():
            if dev.get("driver") and dev.get("iommu_group"):
                with_driver.setdefault(dev["iommu_group"], []).append(dev)
        nodes = None
        for gid, members in with_driver.items():
            if len(members) != 1 or members[0]["vfio"]["bound"]:
                continue
            if nodes is None:
                nodes = set(self.listdir("/dev/vfio"))   # one listing, not one stat per group
            node = "/dev/vfio/%s" % gid
            if gid in nodes:
                dev = members[0]
                dev["vfio"] = vfio_binding(dev["driver"], [], dev["vfio"].get("module"),
                                           [], group_node=node, source=dev["vfio"]["source"])

    def _listdir_at(self, dfd, name, rel):
        try:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dfd)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._error(rel + "/" + name, os.strerror(e.errno))
            return []
        try:
            return sorted(os.listdir(sub))
        except OSError as e:
            self._error(rel + "/" + name, os.strerror(e.errno))
            return []
        finally:
            os.close(sub)

    def mdevs(self):
        """Mediated devices: they have no IOMMU of their own (their parent's applies)."""
        mdevs = {}
        for uuid in self.listdir("/sys/bus/mdev/devices"):
            base = "/sys/bus/mdev/devices/%s" % uuid
            try:
                parent = os.path.basename(os.path.dirname(os.path.realpath(self.path(base))))
            except OSError:
                parent = None
            vfio = self.listdir(base + "/vfio-dev")
            driver = self.link_name(base + "/driver")
            group = self.link_name(base + "/iommu_group")
            binding = self._vfio_binding("mdev", uuid, driver, vfio)
            if not binding["bound"] and driver and group and self.exists("/dev/vfio/%s" % group):
                # an mdev's group is its own (vfio_register_emulated_iommu_dev)
                binding = vfio_binding(driver, vfio, binding.get("module"), [],
                                       group_node="/dev/vfio/%s" % group, source=binding["source"])
            binding["variant"] = False
            mdevs[uuid] = {
                "uuid": uuid,
                "parent": parent,
                "mdev_type": self.link_name(base + "/mdev_type"),
                "driver": driver,
                "iommu_group": group,
                "vfio_cdev": vfio[0] if vfio else None,
                "vfio": binding,
                "has_iommu": False,
                "note": "mediated device: no IOMMU of its own; DMA goes through its parent %s"
                        % (parent or "device"),
            }
        return mdevs

    def vfio_holders(self):
        """Processes holding /dev/vfio nodes open: {node path: ["pid (comm)", ...]}.

        Reads /proc/<pid>/fd links only (what lsof/fuser do); opens nothing.
        """
        holders = {}
        for pid in self.listdir("/proc"):
            if not pid.isdigit():
                continue
            fd_dir = "/proc/%s/fd" % pid
            try:
                fds = os.listdir(self.path(fd_dir))
            except OSError:
                continue
            comm = None
            for fd in fds:
                try:
                    target = os.readlink(self.path("%s/%s" % (fd_dir, fd)))
                except OSError:
                    continue
                if target.startswith("/dev/vfio/") or target == "/dev/iommu":
                    if comm is None:
                        comm = self.read("/proc/%s/comm" % pid) or "?"
                    who = "%s (%s)" % (pid, comm)
                    if who not in holders.setdefault(target, []):
                        holders[target].append(who)
        return holders

    # -- SR-IOV and the PCI topology (issue 12) --------------------------------

    def sriov(self, address):
        """SR-IOV state of a physical function (Documentation/ABI/testing/sysfs-bus-pci), None when
        the device has no sriov_totalvfs (not SR-IOV capable, or a VF). ``vfs``: virtfnN links in N order."""
        base = "/sys/bus/pci/devices/%s" % address
        scan = self.scan_dir(base, SRIOV_ATTRS, (), ()) if self.exists(base + "/sriov_totalvfs") else None
        if scan is None:
            return None
        attr = scan[0]
        vfs = []
        for name in self.listdir(base):
            if name.startswith("virtfn") and name[6:].isdigit():
                target = self.link_name("%s/%s" % (base, name))
                if target:
                    vfs.append((int(name[6:]), target))
        autoprobe = attr["sriov_drivers_autoprobe"]
        return {
            "totalvfs": _int_or_none(attr["sriov_totalvfs"]),
            "numvfs": _int_or_none(attr["sriov_numvfs"]),
            "drivers_autoprobe": None if autoprobe is None else autoprobe.strip() in ("1", "Y", "y"),
            "vf_device": _hex4(attr["sriov_vf_device"]),
            "offset": _int_or_none(attr["sriov_offset"]),
            "stride": _int_or_none(attr["sriov_stride"]),
            "vfs": [t for _n, t in sorted(vfs)],
            "source": "sysfs:%s" % base,
        }

    def upstream_bridges(self, address):
        """PCI bridges/ports above a function, nearest first, from its sysfs device path
        (/sys/devices/pci0000:00/0000:00:0b.0/0000:03:00.0: one readlink, no walk)."""
        try:
            target = os.readlink(self.path("/sys/bus/pci/devices/%s" % address))
        except (OSError, ValueError):
            return []
        parts = [p.lower() for p in target.split("/") if p.count(":") == 2 and PCI_ADDRESS_RE.match(p)]
        if parts and parts[-1] == address.lower():
            parts = parts[:-1]
        return list(reversed(parts))

    def config_space(self, address):
        """The bytes of a function's config space (4096 to root for PCIe, 256 for conventional PCI,
        64 to other users); None when absent or unreadable. Reading config space opens no device
        (lspci does the same)."""
        return self.read_bytes("/sys/bus/pci/devices/%s/config" % address, limit=4096)


SRIOV_ATTRS = ("sriov_totalvfs", "sriov_numvfs", "sriov_drivers_autoprobe", "sriov_offset",
               "sriov_stride", "sriov_vf_device")


def _int_or_none(text):
    try:
        return int(str(text).strip(), 0) if text is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# Pure parsers (also used by unit and property tests)


def normalize_pci_address(text):
    """'00:09.0' / '0000:00:09.0' (any case) -> '0000:00:09.0'; None when not a PCI address."""
    text = str(text).strip().lower()
    if not PCI_ADDRESS_RE.match(text):
        return None
    return text if text.count(":") == 2 else "0000:" + text


def _split_cmdline(raw):
    """Split a kernel command line like the kernel does (double quotes group)."""
    out, cur, quoted = [], [], False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
            continue
        if ch.isspace() and not quoted:
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def cmdline_effects(args):
    """What the IOMMU-related arguments mean, later arguments overriding earlier ones."""

    def opts(key):
        values = []
        for v in args.get(key, []):
            if v is True:
                continue
            values.extend(x.strip() for x in v.split(",") if x.strip())
        return values

    intel, amd, iommu = opts("intel_iommu"), opts("amd_iommu"), opts("iommu")
    effects = {
        "intel_iommu": None, "amd_iommu": None, "iommu_off": "off" in iommu,
        "passthrough": None, "strict": None, "scalable_mode": None, "intremap_off": False,
        "allow_unsafe_interrupts": None, "noiommu_mode": None,
    }
    for v in intel:
        if v in ("on", "off"):
            effects["intel_iommu"] = v
        elif v in ("sm_on", "sm_off"):
            effects["scalable_mode"] = v == "sm_on"
        elif v == "strict":
            effects["strict"] = True
    for v in amd:
        if v in ("off", "force_enable"):
            effects["amd_iommu"] = v
    for v in iommu:
        if v == "pt":
            effects["passthrough"] = True
        elif v == "nopt":
            effects["passthrough"] = False
    for v in opts("iommu.passthrough"):
        effects["passthrough"] = v in ("1", "y", "Y", "on")
    for v in opts("iommu.strict"):
        effects["strict"] = v in ("1", "y", "Y", "on")
    intremap = opts("intremap")
    if "off" in intremap or "nointremap" in args:
        effects["intremap_off"] = True
    for v in opts("iommufd.allow_unsafe_interrupts"):
        effects["allow_unsafe_interrupts"] = v in ("1", "y", "Y")
    for v in opts("vfio.enable_unsafe_noiommu_mode"):
        effects["noiommu_mode"] = v in ("1", "y", "Y")
    return effects


_KCONFIG_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_KCONFIG_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_kconfig(text):
    """Relevant options: 'y', 'm', a value, or 'n' when '# ... is not set'."""
    values = {}
    wanted = set(CONFIG_KEYS)
    for line in text.splitlines():
        m = _KCONFIG_RE.match(line)
        if m and m.group(1) in wanted:
            values[m.group(1)] = m.group(2).strip('"')
            continue
        m = _KCONFIG_UNSET_RE.match(line)
        if m and m.group(1) in wanted:
            values[m.group(1)] = "n"
    return values


def parse_amd_features(text):
    """sysfs ivhdN/amd-iommu/features: 'efr' (older kernels) or 'efr:efr2'.

    Returns (efr, efr2, problem); values are ints or None.
    """
    if text is None:
        return None, None, None
    parts = text.strip().split(":")
    try:
        if len(parts) == 1:
            return int(parts[0], 16), None, None
        if len(parts) == 2:
            return int(parts[0], 16), int(parts[1], 16), None
    except ValueError:
        pass
    return None, None, "unrecognised format %r (expected %%llx or %%llx:%%llx)" % text[:80]


def parse_pci_uevent(text):
    """A PCI device's uevent -> {vendor, device, subsystem_vendor, subsystem_device, class, driver}.

    Format (drivers/pci/pci-driver.c pci_uevent): PCI_CLASS=%04X, PCI_ID=%04X:%04X,
    PCI_SUBSYS_ID=%04X:%04X, plus DRIVER= when a driver is bound. None when the
    text lacks PCI_CLASS or PCI_ID (then the attribute files are read instead).
    Callers take the driver from the ``driver`` link, the binding itself.
    """
    if not text:
        return None
    env = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value.strip()
    pci_id, pci_class = env.get("PCI_ID", ""), env.get("PCI_CLASS")
    vendor, sep, device = pci_id.partition(":")
    if not sep or pci_class is None:
        return None
    sub_vendor, _sep, sub_device = env.get("PCI_SUBSYS_ID", "").partition(":")
    return {"vendor": vendor, "device": device, "subsystem_vendor": sub_vendor or None,
            "subsystem_device": sub_device or None, "class": pci_class,
            "driver": env.get("DRIVER") or None}


def parse_reserved_regions(text):
    """Lines '0x%016llx 0x%016llx type' -> [{start, end, type}], problems."""
    regions, problems = [], []
    if not text:
        return regions, problems
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3:
            problems.append("unparsable line %r" % line[:80])
            continue
        try:
            start, end = int(fields[0], 16), int(fields[1], 16)
        except ValueError:
            problems.append("unparsable line %r" % line[:80])
            continue
        regions.append({"start": "0x%x" % start, "end": "0x%x" % end, "type": fields[2]})
    return regions, problems


def vfio_binding(driver, vfio_dev, module=None, holds=(), group_node=None, source=None):
    """Whether a device is bound to a VFIO driver, from what the kernel shows. Pure.

    ``driver``: the bound driver's name (the ``driver`` link) or None; ``vfio_dev``:
    the entries of the device's ``vfio-dev/`` directory (a VFIO device registered
    for it: vfio_main.c creates ``vfioN`` there for every VFIO driver, with or
    without CONFIG_VFIO_DEVICE_CDEV); ``module``: the driver's module; ``holds``: the
    VFIO core modules (vfio_pci_core, vfio) that module is a holder of;
    ``group_node``: the /dev/vfio/<group> node when the device is the group's only
    bound member. Returns {bound, driver, variant, cdev, detected_by, module, source}.
    """
    vfio_dev = [str(v) for v in (vfio_dev or []) if str(v).startswith("vfio")]
    evidence = []
    if vfio_dev:
        evidence.append("vfio-dev/%s" % vfio_dev[0])
    if driver == VFIO_PCI:
        evidence.append("driver %s" % VFIO_PCI)
    if driver and module:
        holds = list(holds or ())
        for core in [c for c in VFIO_CORE_MODULES if c in holds] + [c for c in holds if c not in VFIO_CORE_MODULES]:
            evidence.append("/sys/module/%s/holders/%s" % (core, module))
    if driver and group_node:
        evidence.append("%s (only bound device of its IOMMU group)" % group_node)
    bound = bool(evidence)
    return {
        "bound": bound,
        "driver": driver if bound else None,
        "variant": bool(bound and driver and driver != VFIO_PCI),
        "cdev": vfio_dev[0] if vfio_dev else None,
        "detected_by": evidence,
        "module": module,
        "source": source,
    }


def is_vfio_bound(dev):
    """True when a device entry (pci_devices()/mdevs()) is bound to any VFIO driver."""
    vfio = dev.get("vfio")
    if isinstance(vfio, dict):
        return bool(vfio.get("bound"))
    return dev.get("driver") == VFIO_PCI


SMMUV3_NO_SYSFS_REGISTERS = (
    "an SMMUv3 exposes no registers in sysfs (arm-smmu-v3 adds its unit without attributes): IDR0-5, "
    "IIDR and AIDR are read through iommufd IOMMU_GET_HW_INFO of a device behind it (hw_info, iommufd)")


def unit_vendor(name, entries):
    if "intel-iommu" in entries:
        return "intel_vtd"
    if "amd-iommu" in entries:
        return "amd"
    if name.startswith("smmu3."):
        return "arm_smmuv3"
    if name.startswith("iommufd_selftest"):
        return "selftest"
    if name.startswith("virtio"):
        return "virtio"
    return "unknown"


def _hex_int(text):
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def _hex4(text):
    if text is None:
        return None
    try:
        return "0x%04x" % int(text, 16)
    except ValueError:
        return None


def group_members_not_vfio(devices, group_devices, address):
    """Members of ``address``'s group that keep it from being viable.

    A group is viable for VFIO when every other endpoint is bound to a VFIO driver
    (vfio-pci or a variant driver, see vfio_binding) or pci-stub, or to no driver; bridges do not count (vfio's own rule,
    drivers/vfio/group.c and Documentation/driver-api/vfio.rst).
    Returns ["address (driver)", ...].
    """
    blockers = []
    for member in group_devices:
        if member == address:
            continue
        dev = devices.get(member)
        if dev is None or dev.get("is_bridge"):
            continue
        driver = dev.get("driver")
        if driver and driver not in _VFIO_DRIVERS and not is_vfio_bound(dev):
            blockers.append("%s (%s)" % (member, driver))
    return blockers
