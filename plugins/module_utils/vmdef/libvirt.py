# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt domain XML -> requirements, translated as libvirt's QEMU driver translates it.

Sources (libvirt, src/qemu/qemu_command.c: qemuBuildIOMMUCommandLine(), qemuBuildMachineCommandLine(),
qemuBuildMemCommandLine(); docs/formatdomain.rst "IOMMU devices"; tests/qemuxmlconfdata/*iommu*.args
for the exact JSON libvirt emits). docs/vm-definitions.md has the tables and libvirt versions.

Safety: the document is refused before parsing when it has a DOCTYPE or an ENTITY declaration
(entity expansion, external entities) or is larger than MAX_INPUT_CHARS; expat parses the rest.
"""

from __future__ import absolute_import, division, print_function

import re
import xml.etree.ElementTree as ET

from ansible_collections.iommu.host.plugins.module_utils.vmdef import qemu as qemu_cmdline
from ansible_collections.iommu.host.plugins.module_utils.vmdef.common import (
    MAX_INPUT_CHARS,
    Definition,
    VMDefinitionError,
    format_nodeset,
    libvirt_scale,
    mdev_uuid,
    norm_props,
    norm_value,
    parse_nodeset,
    text,
)

__metaclass__ = type

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
_Q = "{%s}" % QEMU_NS
_DECLARATION_RE = re.compile(r"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.I)

# <iommu><driver .../> attribute -> (QEMU property, kind) per model, in the order libvirt emits them.
# kind: 'switch' = virTristateSwitch emitted as the string "on"/"off" (OnOffAuto properties),
# 'bool' = emitted as a JSON bool, 'int' = emitted as a number.
IOMMU_DRIVER_ATTRS = {
    "intel": (
        ("intremap", "intremap", "switch"),
        ("caching_mode", "caching-mode", "bool"),
        ("eim", "eim", "switch"),
        ("iotlb", "device-iotlb", "bool"),
        ("aw_bits", "aw-bits", "int"),
        ("dma_translation", "dma-translation", "bool"),
        ("scalable_mode", "scalable-mode", "bool"),
        ("fsts", "fsts", "bool"),
    ),
    "amd": (
        ("intremap", "intremap", "switch"),
        ("passthrough", "pt", "bool"),
        ("xtsup", "xtsup", "bool"),
        ("iotlb", "device-iotlb", "bool"),
    ),
    "virtio": (
        ("aw_bits", "aw-bits", "int"),
    ),
    "smmuv3": (
        ("accel", "accel", "bool"),
        ("ats", "ats", "bool"),
        ("ril", "ril", "bool"),
        ("ssidSize", "ssidsize", "int"),
        ("oas", "oas", "int"),
    ),
}
_ATTR_ALIASES = {"ssidsize": "ssidSize", "ssid_size": "ssidSize", "pcibus": "pciBus", "pci_bus": "pciBus"}
QEMU_MODEL = {"intel": "intel-iommu", "amd": "amd-iommu", "virtio": "virtio-iommu", "smmuv3": "arm-smmuv3"}
_SWITCH = {"on": True, "off": False}
_YESNO = {"yes": True, "no": False, "on": True, "off": False}


def parse_xml(data):
    """The <domain> element of a libvirt domain XML document (str or bytes)."""
    if isinstance(data, bytes):
        if len(data) > MAX_INPUT_CHARS:
            raise VMDefinitionError("the XML document is larger than %d bytes" % MAX_INPUT_CHARS)
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise VMDefinitionError("the XML document is not UTF-8: %s" % e)
    if not isinstance(data, str):
        raise VMDefinitionError("a libvirt domain XML must be a string, not %s" % type(data).__name__)
    if len(data) > MAX_INPUT_CHARS:
        raise VMDefinitionError("the XML document is longer than %d characters" % MAX_INPUT_CHARS)
    if not data.strip():
        raise VMDefinitionError("the XML document is empty")
    m = _DECLARATION_RE.search(data)
    if m:
        raise VMDefinitionError(
            "the XML document has a <!%s declaration: document type declarations and entities are refused "
            "(entity expansion, external entities); libvirt domain XML never needs them" % m.group(1).upper())
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise VMDefinitionError("malformed XML: %s" % e)
    except (ValueError, RecursionError) as e:  # e.g. a document too deeply nested for the C stack
        raise VMDefinitionError("malformed XML: %s" % e)
    if root.tag != "domain":
        raise VMDefinitionError("not a libvirt domain XML: the root element is <%s>, not <domain>" % root.tag)
    return root


def _int_c(value):
    """An unsigned int as libvirt reads it (virStrToLong_ui, base 0: 0x.. hex, 0.. octal); None if not."""
    if value is None:
        return None
    s = value.strip().lower()
    try:
        if s.startswith("0x"):
            return int(s, 16)
        if len(s) > 1 and s.startswith("0"):
            return int(s, 8)
        return int(s, 10)
    except ValueError:
        return None


def _pci_source(elem):
    """'dddd:bb:ss.f' of a <source><address domain= bus= slot= function=/></source>; None if absent."""
    addr = elem.find("source/address")
    if addr is None:
        return None
    parts = [_int_c(addr.get(k, "0")) for k in ("domain", "bus", "slot", "function")]
    if any(p is None for p in parts) or parts[0] > 0xffff or parts[1] > 0xff or parts[2] > 0x1f or parts[3] > 7:
        return False
    return "%04x:%02x:%02x.%d" % tuple(parts)


def _alias(elem):
    alias = elem.find("alias")
    return alias.get("name") if alias is not None and alias.get("name") else None


def _controller_alias(root, index):
    for ctl in root.findall("devices/controller"):
        if ctl.get("type") == "pci" and _int_c(ctl.get("index", "")) == index:
            if ctl.get("model") == "pcie-root":
                return "pcie.0"
            if ctl.get("model") == "pci-root":
                return "pci.0"
            return _alias(ctl) or "pci.%d" % index
    return "pcie.0" if index == 0 else "pci.%d" % index


def _address_props(root, elem, props):
    addr = elem.find("address")
    if addr is None or addr.get("type") != "pci":
        return
    bus, slot, fn = (_int_c(addr.get(k, "0")) for k in ("bus", "slot", "function"))
    if None in (bus, slot, fn):
        return
    props["bus"] = _controller_alias(root, bus)
    props["addr"] = "0x%x" % slot if not fn else "0x%x.0x%x" % (slot, fn)


def _iommu(root, elem, defn):
    model = elem.get("model")
    if model not in QEMU_MODEL:
        defn.problem("<iommu model=%s> is not a model libvirt knows (intel, amd, smmuv3, virtio): not judged"
                     % text(model))
        return
    driver = elem.find("driver")
    attrs = {}
    if driver is not None:
        for key, value in driver.attrib.items():
            attrs[_ATTR_ALIASES.get(key.lower(), key)] = value
    alias = _alias(elem) or "iommu0"
    props = {}
    if model == "amd":
        # libvirt adds the AMDVI-PCI function (id = the alias) and points amd-iommu at it with pci-id
        props["pci-id"] = alias
    elif model == "smmuv3":
        bus = attrs.pop("pciBus", None)
        if bus is None:
            # no pciBus: the machine-level SMMUv3 (-machine virt,iommu=smmuv3), no device properties
            device_attrs = sorted(spec[0] for spec in IOMMU_DRIVER_ATTRS["smmuv3"] if spec[0] in attrs)
            if device_attrs:
                defn.problem("<iommu model='smmuv3'> driver attributes %s need pciBus (a pluggable arm-smmuv3 "
                             "device, libvirt >= 11.10); libvirt refuses them on the machine-level SMMUv3"
                             % ", ".join(device_attrs))
            defn.viommus.append(("arm-smmuv3", {}, "<iommu model='smmuv3'> (-machine iommu=smmuv3)"))
            _unknown_attrs(model, attrs, defn)
            return
        index = _int_c(bus)
        props["primary-bus"] = _controller_alias(root, index if index is not None else 0)
        props["id"] = alias
    else:
        props["id"] = alias
    for attr, prop, kind in IOMMU_DRIVER_ATTRS[model]:
        if attr not in attrs:
            continue
        raw = attrs.pop(attr)
        if kind == "int":
            value = _int_c(raw)
            if value is None:
                defn.problem("<iommu><driver %s='%s'> is not a number (libvirt refuses it): ignored" % (attr, raw))
                continue
            if value == 0:
                continue  # libvirt emits aw-bits only when set (z: zero omitted)
        else:
            if raw not in _SWITCH:
                defn.problem("<iommu><driver %s='%s'> is neither on nor off (libvirt refuses it): ignored"
                             % (attr, raw))
                continue
            value = _SWITCH[raw]
        props[prop] = value
    _unknown_attrs(model, attrs, defn)
    if model == "virtio" and driver is not None:
        granule = driver.find("granule")
        if granule is not None:
            if granule.get("mode"):
                props["granule"] = granule.get("mode")
            elif granule.get("size"):
                size = libvirt_scale(granule.get("size"), granule.get("unit"), "KiB")
                if size is None or size % 1024:
                    defn.problem("<iommu><driver><granule size=%s> is not a size in KiB: ignored"
                                 % text(granule.get("size")))
                else:
                    props["granule"] = "%dk" % (size // 1024)
    if model == "virtio":
        _address_props(root, elem, props)  # amd: the address goes to the AMDVI-PCI companion
    origin = "<iommu model='%s'>" % model
    defn.viommus.append((QEMU_MODEL[model], norm_props(props), origin))


def _unknown_attrs(model, attrs, defn):
    for attr in sorted(attrs):
        defn.problem("<iommu model='%s'><driver %s='%s'>: this translator does not know how libvirt passes "
                     "it to QEMU; not judged" % (model, attr, attrs[attr]))


def _hostdev_driver(elem, defn, label):
    """iommufd flag (True/False/None) of a <driver> of a hostdev or a hostdev interface."""
    driver = elem.find("driver")
    if driver is None:
        return None
    name = driver.get("name")
    if name and name != "vfio":
        defn.problem("%s uses <driver name='%s'> (not VFIO): the gate judges VFIO assignment only" % (label, name))
    flag = driver.get("iommufd")
    if flag is None:
        return None
    if flag not in _YESNO:
        defn.problem("%s <driver iommufd='%s'> is neither yes nor no" % (label, flag))
        return None
    return _YESNO[flag]


def _pci_hostdev(elem, what, alias, defn):
    """A PCI function assigned by <hostdev type='pci'> or <interface type='hostdev'>: libvirt passes
    -device vfio-pci with host= the source address (and id= the alias)."""
    addr = _pci_source(elem)
    label = "%s%s>" % (what, " alias=%s" % alias if alias else "")
    if not addr:
        defn.problem("%s has no valid <source><address domain= bus= slot= function=/>: ignored" % label)
        return
    props = {"host": addr}
    if alias:
        props["id"] = alias
    defn.devices.append({"address": addr, "iommufd": _hostdev_driver(elem, defn, label), "label": alias,
                         "props": props})


def _devices(root, defn):
    for elem in root.findall("devices/hostdev"):
        if elem.get("mode", "subsystem") != "subsystem":
            continue
        kind = elem.get("type")
        alias = _alias(elem)
        if kind == "pci":
            _pci_hostdev(elem, "<hostdev type='pci'", alias, defn)
        elif kind == "mdev":
            src = elem.find("source/address")
            uuid = mdev_uuid(src.get("uuid")) if src is not None else None
            model = elem.get("model")
            if not uuid:
                defn.problem("<hostdev type='mdev'> has no valid <source><address uuid=.../>: ignored")
                continue
            if model in ("vfio-ccw", "vfio-ap"):
                defn.problem("mdev %s has model %s (s390): the gate judges vfio-pci mdevs only" % (uuid, model))
            defn.devices.append({"mdev": uuid, "iommufd": _hostdev_driver(elem, defn, "mdev %s" % uuid),
                                 "label": alias, "props": {"sysfsdev": "/sys/bus/mdev/devices/%s" % uuid}})
    for elem in root.findall("devices/interface"):
        kind = elem.get("type")
        alias = _alias(elem)
        if kind == "hostdev":
            _pci_hostdev(elem, "<interface type='hostdev'", alias, defn)
        elif kind == "network":
            driver = elem.find("driver")
            if driver is not None and driver.get("name") == "vfio":
                net = elem.find("source")
                defn.problem("<interface type='network'> with <driver name='vfio'> takes a device from the pool of "
                             "network %s when the VM starts: the gate cannot tell which device"
                             % text(net.get("network") if net is not None else None))


def _overrides(root, defn):
    """<qemu:override><qemu:device alias=...><qemu:frontend><qemu:property .../> (libvirt >= 8.2)."""
    for dev in root.findall("%soverride/%sdevice" % (_Q, _Q)):
        alias = dev.get("alias")
        targets = [d for d in defn.devices if d.get("label") == alias]
        vio = [(i, v) for i, v in enumerate(defn.viommus) if v[1].get("id") == alias]
        if not targets and not vio:
            defn.problem("<qemu:override> of device alias %s: no device with that <alias> (automatic aliases are "
                         "not known before the VM starts); the override is not applied" % text(alias))
            continue
        for prop in dev.findall("%sfrontend/%sproperty" % (_Q, _Q)):
            name, kind, value = prop.get("name"), prop.get("type"), prop.get("value")
            if not name:
                continue
            for target in targets:
                if kind == "remove":
                    target["props"].pop(name, None)
                else:
                    target["props"][name] = norm_value(value)
            for index, (model, props, origin) in vio:
                props = dict(props)
                if kind == "remove":
                    props.pop(name, None)
                else:
                    props[name] = norm_value(value)
                defn.viommus[index] = (model, props, origin + " + <qemu:override>")


def _commandline(root, defn):
    words = [arg.get("value") for arg in root.findall("%scommandline/%sarg" % (_Q, _Q))]
    words = [w for w in words if w is not None]
    if not words:
        return
    st = qemu_cmdline.read_args(words, defn, has_binary=False)
    qemu_cmdline.resolve_embedded(defn, st)
    if st.globals:
        # -global in <qemu:commandline> also reaches the devices libvirt creates
        for dev in defn.devices:
            for gdriver, prop, value in st.globals:
                if gdriver == "vfio-pci" and prop not in dev["props"]:
                    dev["props"][prop] = norm_value(value)
        for index, (model, props, origin) in enumerate(defn.viommus):
            extra = qemu_cmdline._globals_for(model, st)  # pylint: disable=protected-access
            if extra:
                merged = dict((k, norm_value(v)) for k, v in extra.items())
                merged.update(props)
                defn.viommus[index] = (model, merged, origin + " + <qemu:commandline> -global")
    if st.objects and any(o.get("qom-type") == "iommufd" for o in st.objects.values()):
        defn.iommufd_objects.extend(k for k, o in st.objects.items() if o.get("qom-type") == "iommufd")


def _scaled(elem, default_unit="KiB"):
    if elem is None or elem.text is None:
        return None
    return libvirt_scale(elem.text.strip(), elem.get("unit"), default_unit)


_MIB = 1 << 20


def _align(size, arch):
    """libvirt rounds guest memory up (qemuDomainAlignMemorySizes): 1 MiB, 256 MiB on ppc64."""
    if size is None:
        return None
    step = 256 * _MIB if arch and arch.startswith("ppc64") else _MIB
    return -(-size // step) * step


def _memory(root, defn):
    mem = defn.memory
    backing = root.find("memoryBacking")
    pages = []
    source = None
    if backing is not None:
        huge = backing.find("hugepages")
        if huge is not None:
            entries = huge.findall("page")
            if not entries:
                pages.append({"size": None, "nodeset": None})
            for page in entries:
                size = libvirt_scale(page.get("size"), page.get("unit"), "KiB")
                nodeset = page.get("nodeset")
                if nodeset is not None and parse_nodeset(nodeset) is None:
                    defn.problem("<hugepages><page nodeset='%s'> is not a node set" % nodeset)
                pages.append({"size": size, "nodeset": format_nodeset(parse_nodeset(nodeset)) if nodeset else None})
        src = backing.find("source")
        if src is not None:
            source = src.get("type")
        mem["locked"] = backing.find("locked") is not None
        access = backing.find("access")
        mem["shared"] = access is not None and access.get("mode") == "shared"
    mem["hugepages"] = pages
    if pages:
        mem["source"] = "memfd" if source == "memfd" else "hugetlbfs"
    else:
        mem["source"] = source or "anonymous"
    hard = root.find("memtune/hard_limit")
    mem["hard_limit"] = _scaled(hard)
    maxmem = root.find("maxMemory")
    if maxmem is not None:
        mem["max_size"] = _scaled(maxmem)
        slots = _int_c(maxmem.get("slots"))
        mem["slots"] = slots
    numatune = root.find("numatune/memory")
    if numatune is not None:
        mem["policy"] = numatune.get("mode", "strict")
        mem["host_nodes"] = format_nodeset(parse_nodeset(numatune.get("nodeset"))) if numatune.get("nodeset") else None
    memnodes = dict((_int_c(n.get("cellid", "")), n) for n in root.findall("numatune/memnode"))
    cells = []
    for cell in root.findall("cpu/numa/cell"):
        cid = _int_c(cell.get("id", str(len(cells))))
        size = _align(libvirt_scale(cell.get("memory"), cell.get("unit"), "KiB"), defn.arch)
        node = memnodes.get(cid)
        entry = {"id": cid, "cpus": cell.get("cpus"), "size": size,
                 "host_nodes": node.get("nodeset") if node is not None else mem["host_nodes"],
                 "policy": node.get("mode", "strict") if node is not None else mem["policy"],
                 "hugepage_size": _cell_page(pages, cid)}
        if cell.get("memAccess") == "shared":
            mem["shared"] = True
        cells.append(entry)
    mem["numa"] = cells
    total = _scaled(root.find("memory"))
    if cells and all(c["size"] is not None for c in cells):
        mem["size"] = sum(c["size"] for c in cells)
    else:
        mem["size"] = _align(total, defn.arch)
    if root.find("memory") is None:
        defn.problem("the domain has no <memory> element")


def _cell_page(pages, cid):
    default = None
    for page in pages:
        if page["nodeset"] is None:
            default = page["size"] if default is None else default
            continue
        nodes = parse_nodeset(page["nodeset"]) or set()
        if cid in nodes:
            return page["size"]
    return default


def from_libvirt(data):
    """Definition of a libvirt domain XML document."""
    root = parse_xml(data)
    defn = Definition("libvirt")
    defn.name = (root.findtext("name") or "").strip() or None
    ostype = root.find("os/type")
    if ostype is not None:
        defn.arch = ostype.get("arch")
        defn.machine = ostype.get("machine")
    if root.get("type") not in (None, "kvm", "qemu"):
        defn.problem("domain type %s: the translation follows libvirt's QEMU driver" % text(root.get("type")))
    for elem in root.findall("devices/iommu"):
        _iommu(root, elem, defn)
    _devices(root, defn)
    for elem in root.iter("iommufd"):
        flag = elem.get("enabled")
        if flag in _YESNO:
            defn.iommufd_default = _YESNO[flag]
    if defn.iommufd_default is not None:
        for dev in defn.devices:
            if dev.get("iommufd") is None:
                dev["iommufd"] = defn.iommufd_default
    for dev in defn.devices:
        if dev.get("iommufd") is None:
            dev["iommufd"] = False
    _memory(root, defn)
    _commandline(root, defn)
    _overrides(root, defn)
    return defn
