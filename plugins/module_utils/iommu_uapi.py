# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel interface: the IOMMUFD and VFIO cdev uAPI through ioctl(2).

Layouts and numbers are those of include/uapi/linux/iommufd.h and
include/uapi/linux/vfio.h (linux 7.3); see docs/facts.md for the sources.
Stdlib only (struct, fcntl, ctypes, os): this file runs on target hosts.

Every failure raises :class:`IommuError` carrying a stable ``code``, the
errno, the step that failed, the device, a message saying why and a remedy.
"""

from __future__ import absolute_import, division, print_function

import ctypes
import errno
import fcntl
import os
import struct

__metaclass__ = type

# ioctl numbers: all are _IO(';', nr), i.e. 0x3b00 | nr (iommufd.h:37-61, vfio.h:71-72).
IOMMU_DESTROY = 0x3B80
IOMMU_IOAS_ALLOC = 0x3B81
IOMMU_GET_HW_INFO = 0x3B8A
IOMMU_TEST_CMD = 0x3BA0  # drivers/iommu/iommufd/iommufd_test.h, CONFIG_IOMMUFD_TEST only
VFIO_DEVICE_BIND_IOMMUFD = 0x3B76
VFIO_DEVICE_FEATURE = 0x3B75  # _IO(VFIO_TYPE, VFIO_BASE + 17), vfio.h

# struct vfio_device_feature (vfio.h): __u32 argsz; __u32 flags; __u8 data[].
# flags = feature index (low 16 bits) | GET / SET / PROBE.
FEATURE_HDR_FMT = "<II"
FEATURE_HDR_SIZE = struct.calcsize(FEATURE_HDR_FMT)  # 8
VFIO_DEVICE_FEATURE_MASK = 0xFFFF
VFIO_DEVICE_FEATURE_GET = 1 << 16
VFIO_DEVICE_FEATURE_SET = 1 << 17
VFIO_DEVICE_FEATURE_PROBE = 1 << 18
# Feature indexes (vfio.h).
VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0
VFIO_DEVICE_FEATURE_MIGRATION = 1
VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2
VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3
VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4
VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5
VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6
VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7
VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8
VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9
# struct vfio_device_feature_migration { __aligned_u64 flags; } (vfio.h)
MIGRATION_FMT = "<Q"
VFIO_MIGRATION_STOP_COPY = 1 << 0
VFIO_MIGRATION_P2P = 1 << 1
VFIO_MIGRATION_PRE_COPY = 1 << 2

# struct iommu_hw_info (iommufd.h:761-812), newest layout, 40 bytes:
#   size, flags, dev_id, data_len, data_uptr, in/out_data_type,
#   out_max_pasid_log2, __reserved[3], out_capabilities
HW_INFO_FMT = "<IIIIQIB3xQ"
HW_INFO_SIZE = struct.calcsize(HW_INFO_FMT)  # 40
# The kernel accepts any size from offsetofend(__reserved) = 32 (the v6.6 layout,
# without out_capabilities) and copies back min(size, sizeof) bytes.
HW_INFO_MIN_SIZE = 32
IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0

# struct vfio_device_bind_iommufd (vfio.h:931-938), 24 bytes; argsz 16 is the
# older layout without token_uuid_ptr and is accepted by every kernel.
BIND_FMT = "<IIiIQ"
BIND_SIZE = struct.calcsize(BIND_FMT)  # 24

# Selftest mock (iommufd_test.h)
IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12
MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0
MOCK_FLAGS_DEVICE_PASID = 1 << 2
TEST_CMD_SIZE = 72

DEV_IOMMU = "/dev/iommu"
VFIO_CDEV_DIR = "/dev/vfio/devices"

# Vendor payloads are at most 40 bytes today; a kernel that reports more is
# asked again with a buffer of the size it reported.
_DATA_BUF = 256

# First kernel release that reports each output of IOMMU_GET_HW_INFO. An older
# kernel leaves the field zero, which must not be read as "unsupported".
# (Upstream commits listed in docs/facts.md; releases inferred from commit dates.)
FIELD_SINCE = {
    "hw_info": (6, 6),
    "capabilities.dirty_tracking": (6, 7),
    "capabilities.pasid": (6, 15),
    "input_type": (6, 17),
    "capabilities.ats_not_supported": (7, 1),
    "type.arm_smmuv3": (6, 13),
    "type.tegra241_cmdqv": (6, 17),
    "type.amd": (7, 0),
    # VFIO_DEVICE_FEATURE probes (vfio.h; releases inferred from the upstream commits)
    "vfio_feature.migration": (5, 18),
    "vfio_feature.dma_logging": (6, 2),
    "vfio_feature.migration.pre_copy": (6, 3),
}


class IommuError(Exception):
    """A kernel interface failure with what failed, why and the remedy."""

    def __init__(self, code, message, remedy=None, err=None, step=None, device=None):
        super(IommuError, self).__init__(message)
        self.code = code
        self.message = message
        self.remedy = remedy
        self.errno = err
        self.step = step
        self.device = device
        self.features = None  # VFIO_DEVICE_FEATURE probes made before the failure, if any

    def as_dict(self):
        return {
            "code": self.code,
            "message": self.message,
            "remedy": self.remedy,
            "errno": errno.errorcode.get(self.errno, self.errno) if self.errno else None,
            "step": self.step,
            "device": self.device,
        }

    def __str__(self):
        where = " on %s" % self.device if self.device else ""
        text = "%s%s: %s" % (self.step or "iommu", where, self.message)
        if self.remedy:
            text += " Remedy: %s" % self.remedy
        return text


def parse_release(release):
    """'7.3.4-amd64' -> (7, 3); unknown -> None."""
    try:
        parts = release.split("-", 1)[0].split(".")
        return int(parts[0]), int(parts[1])
    except (AttributeError, IndexError, ValueError):
        return None


def kernel_reports(field, release):
    """True/False when the running kernel does/does not report ``field``; None when unknown."""
    version = parse_release(release)
    if version is None or field not in FIELD_SINCE:
        return None
    return version >= FIELD_SINCE[field]


# ---------------------------------------------------------------------------
# errno -> message, per step. The context dict lets a caller that knows more
# (from sysfs) pick the right explanation where one errno has several causes.

_PERM_REMEDY = ("Run the task as root (become: true), or give the user access to "
                "/dev/iommu and /dev/vfio/devices/* (role iommu.host.provision, option "
                "provision_device_group).")


def _open_error(path, err, device):
    if err == errno.ENOENT and path == DEV_IOMMU:
        return IommuError(
            "no_iommufd",
            "/dev/iommu does not exist: the kernel was built without CONFIG_IOMMUFD, or the "
            "iommufd module is not loaded.",
            "Load it with 'modprobe iommufd' (role iommu.host.provision persists it). If the "
            "kernel has no CONFIG_IOMMUFD (Debian's kernels do not enable it), boot a kernel "
            "that does; until then use sysfs-only facts.",
            err, "open /dev/iommu", device)
    if err == errno.ENOENT:
        return IommuError(
            "no_vfio_cdev",
            "%s does not exist: the device is not bound to vfio-pci, or the kernel was built "
            "without CONFIG_VFIO_DEVICE_CDEV (then only the legacy /dev/vfio/<group> "
            "interface exists)." % path,
            "Bind the device to vfio-pci (module iommu.host.vfio_pci); if it is bound and no "
            "/sys/bus/pci/devices/<address>/vfio-dev/ directory exists, use a kernel with "
            "CONFIG_VFIO_DEVICE_CDEV=y.",
            err, "open %s" % path, device)
    if err in (errno.EACCES, errno.EPERM):
        return IommuError(
            "permission_denied",
            "permission denied opening %s." % path, _PERM_REMEDY, err, "open %s" % path, device)
    if err == errno.ENODEV:
        return IommuError(
            "device_gone",
            "%s refers to a device that is being removed or unbound." % path,
            "Wait for the driver change to finish and gather facts again.",
            err, "open %s" % path, device)
    return IommuError(
        "open_failed", "opening %s failed: %s." % (path, os.strerror(err)),
        None, err, "open %s" % path, device)


def bind_error(err, device, context=None):
    """Explain a VFIO_DEVICE_BIND_IOMMUFD failure (drivers/vfio/device_cdev.c, iommufd/device.c).

    ``context`` may hold what sysfs tells about the device:
    ``interrupt_remapping`` (True/False/None), ``group_other_drivers``
    (list of "address (driver)" of group members bound to a kernel driver),
    ``in_use_by`` (list of "pid (comm)").
    """
    context = context or {}
    step = "VFIO_DEVICE_BIND_IOMMUFD"
    holders = context.get("in_use_by") or []
    others = context.get("group_other_drivers") or []
    if err == errno.EPERM:
        if others:
            return IommuError(
                "group_not_viable",
                "the IOMMU group is not owned by iommufd: other members are bound to kernel "
                "drivers (%s), and a group has one DMA owner." % ", ".join(others),
                "Bind every endpoint of the group to vfio-pci (module iommu.host.vfio_pci binds "
                "the whole group), or move the device to a slot with its own group.",
                err, step, device)
        if holders:
            return IommuError(
                "in_use",
                "the IOMMU group is owned by another iommufd context (held by %s)." % ", ".join(holders),
                "Stop the process that uses the device (typically a running VM) first.",
                err, step, device)
        why = ("interrupt remapping is not enabled" if context.get("interrupt_remapping") is False
               else "interrupt remapping is probably not enabled")
        return IommuError(
            "no_interrupt_remapping",
            "iommufd refused the device: MSI interrupts are not isolated (%s), and iommufd "
            "only accepts devices whose MSIs are isolated (iommufd/device.c)." % why,
            "Enable interrupt remapping: on Intel boot with intel_iommu=on and keep "
            "intremap enabled (no intremap=off); on AMD keep amd_iommu_intr enabled and check the "
            "firmware's IVRS; a QEMU guest needs intel-iommu,intremap=on or amd-iommu,intremap=on "
            "with -machine kernel-irqchip=split. As an unsafe last resort "
            "iommufd.allow_unsafe_interrupts=1 lets a device in without isolation.",
            err, step, device)
    if err == errno.EBUSY:
        return IommuError(
            "in_use",
            "the device's legacy VFIO group node /dev/vfio/<group> is open%s, or the group is "
            "attached to a non-default domain; the device is in use."
            % (" (by %s)" % ", ".join(holders) if holders else ""),
            "Stop the process using the device (a VM using the legacy VFIO container) and retry.",
            err, step, device)
    if err == errno.EINVAL:
        if holders:
            return IommuError(
                "in_use",
                "the device is already open through another VFIO cdev file descriptor (held by %s)."
                % ", ".join(holders),
                "Stop the process that uses the device (typically a running VM) first.",
                err, step, device)
        return IommuError(
            "bind_invalid",
            "the kernel rejected the bind (EINVAL): the device is already bound through another "
            "cdev descriptor, or its IOMMU does not guarantee cache coherency.",
            "Check that no VM uses the device; otherwise this IOMMU cannot be used by iommufd.",
            err, step, device)
    if err == errno.EAGAIN:
        return IommuError(
            "device_locked",
            "vfio-pci could not take the device lock to reset it on open (another reset or "
            "driver operation is in progress).",
            "Retry when the device is idle.", err, step, device)
    if err == errno.EACCES:
        return IommuError(
            "vf_token_required",
            "the device is an SR-IOV VF whose PF is bound to vfio-pci: a VF token is required.",
            "Query the PF instead, or set the VF token the PF's user configured.",
            err, step, device)
    if err == errno.ENOTTY:
        return IommuError(
            "kernel_too_old",
            "the kernel does not know VFIO_DEVICE_BIND_IOMMUFD (added in Linux 6.6).",
            "Use Linux 6.6 or newer with CONFIG_VFIO_DEVICE_CDEV, or sysfs-only facts.",
            err, step, device)
    if err == errno.ENODEV:
        return IommuError(
            "no_iommu_group",
            "the device has no IOMMU group: no IOMMU translates it.",
            "Enable the IOMMU in firmware and on the kernel command line (role iommu.host.provision).",
            err, step, device)
    return IommuError("bind_failed", "binding to iommufd failed: %s." % os.strerror(err),
                      None, err, step, device)


def hw_info_error(err, device, in_type=None):
    """Explain an IOMMU_GET_HW_INFO failure (drivers/iommu/iommufd/device.c:1629-1749)."""
    step = "IOMMU_GET_HW_INFO"
    if err == errno.ENOTTY:
        return IommuError(
            "kernel_too_old",
            "the kernel does not implement IOMMU_GET_HW_INFO (added in Linux 6.6).",
            "Use Linux 6.6 or newer, or sysfs-only facts.", err, step, device)
    if err == errno.EOPNOTSUPP:
        if in_type is not None:
            return IommuError(
                "type_not_supported",
                "the IOMMU driver does not report hw_info type %s, or the kernel cannot take an "
                "input type (IOMMU_HW_INFO_FLAG_INPUT_TYPE needs Linux 6.17)." % in_type,
                "Query without a type (the driver's default).", err, step, device)
        return IommuError(
            "no_hw_info",
            "the kernel reports no hardware information for this device (a no-IOMMU device, or "
            "an IOMMU driver without hw_info support).",
            "Use the sysfs values (units in the facts).", err, step, device)
    if err == errno.ENOENT:
        return IommuError(
            "not_an_iommu_device",
            "the bound object is not a device with an IOMMU (a mediated device has no IOMMU of "
            "its own; its parent's IOMMU applies).",
            "Query the parent device instead.", err, step, device)
    if err == errno.EINVAL:
        return IommuError(
            "bad_request", "the kernel rejected the request layout (EINVAL).",
            None, err, step, device)
    return IommuError("hw_info_failed", "IOMMU_GET_HW_INFO failed: %s." % os.strerror(err),
                      None, err, step, device)


_FEATURE_NAMES = {
    VFIO_DEVICE_FEATURE_MIGRATION: "MIGRATION",
    VFIO_DEVICE_FEATURE_DMA_LOGGING_START: "DMA_LOGGING_START",
}


def feature_request_name(flags):
    """'GET|MIGRATION', 'PROBE|DMA_LOGGING_START' - the request as QEMU writes it."""
    ops = [n for bit, n in ((VFIO_DEVICE_FEATURE_GET, "GET"), (VFIO_DEVICE_FEATURE_SET, "SET"),
                            (VFIO_DEVICE_FEATURE_PROBE, "PROBE")) if flags & bit]
    index = flags & VFIO_DEVICE_FEATURE_MASK
    return "|".join(ops + [_FEATURE_NAMES.get(index, "feature %d" % index)])


def feature_error(err, device, flags):
    """Explain a VFIO_DEVICE_FEATURE failure (drivers/vfio/vfio_main.c vfio_ioctl_device_feature)."""
    request = feature_request_name(flags)
    step = "VFIO_DEVICE_FEATURE(%s)" % request
    index = flags & VFIO_DEVICE_FEATURE_MASK
    what, ops = {VFIO_DEVICE_FEATURE_MIGRATION: ("the VFIO migration uAPI", "migration"),
                 VFIO_DEVICE_FEATURE_DMA_LOGGING_START: ("device DMA logging, i.e. device-side dirty "
                                                         "page tracking", "DMA logging")}.get(index, (request, None))
    if err == errno.ENOTTY:
        return IommuError(
            "feature_not_supported",
            "the device's driver does not implement %s (ENOTTY%s)%s." % (
                what, ": it has no %s ops" % ops if ops else "",
                "; QEMU reports this as 'VFIO migration is not supported in kernel'"
                if index == VFIO_DEVICE_FEATURE_MIGRATION else ""),
            "Migration needs a VFIO variant driver that implements it for this device (e.g. "
            "mlx5_vfio_pci, pds_vfio_pci, virtio_vfio_pci) or an mdev with migration support; "
            "plain vfio-pci implements neither." if index == VFIO_DEVICE_FEATURE_MIGRATION else
            "Device dirty tracking needs a variant driver that implements it; otherwise QEMU "
            "relies on IOMMU dirty tracking (iommufd backend) or on none.",
            err, step, device)
    if err == errno.EINVAL:
        return IommuError(
            "feature_invalid",
            "the kernel rejected %s (EINVAL): the device file is not bound to an iommufd yet, "
            "the request's flags or size are not what this kernel accepts, or the kernel "
            "predates the feature (MIGRATION: Linux 5.18, DMA_LOGGING: 6.2) and the driver has "
            "no handler for unknown features." % request,
            "Use a kernel that has the feature; check that no other process uses the device.",
            err, step, device)
    if err == errno.EOPNOTSUPP:
        return IommuError(
            "feature_not_supported",
            "the driver reports %s as not supported (EOPNOTSUPP)." % what,
            None, err, step, device)
    if err == errno.ENODEV:
        return IommuError(
            "device_gone",
            "the device went away (unbound or removed) during the query.",
            "Gather facts again once the driver change is over.", err, step, device)
    if err == errno.EFAULT:
        return IommuError(
            "bad_request", "the kernel could not read or write the request buffer (EFAULT).",
            None, err, step, device)
    return IommuError("feature_failed", "VFIO_DEVICE_FEATURE(%s) failed: %s." % (request, os.strerror(err)),
                      None, err, step, device)


# ---------------------------------------------------------------------------
# Raw calls


def _ioctl(fd, request, buf):
    fcntl.ioctl(fd, request, buf, True)
    return buf


def _open(path, device):
    try:
        return os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _open_error(path, e.errno, device)


def get_hw_info(iommufd, dev_id, in_type=None, device=None, data_len=_DATA_BUF):
    """IOMMU_GET_HW_INFO on an open /dev/iommu for a bound device id.

    Returns {'type_id', 'data' (bytes, the vendor struct), 'data_len' (the
    kernel's length), 'capabilities', 'max_pasid_log2', 'flags_sent'}.
    """
    flags = 0
    type_in = 0
    if in_type is not None:
        flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE
        type_in = int(in_type)
    while True:
        data = ctypes.create_string_buffer(data_len)
        req = bytearray(struct.pack(HW_INFO_FMT, HW_INFO_SIZE, flags, dev_id, data_len,
                                    ctypes.addressof(data), type_in, 0, 0))
        try:
            _ioctl(iommufd, IOMMU_GET_HW_INFO, req)
        except OSError as e:
            raise hw_info_error(e.errno, device, in_type)
        (_size, _flags, _dev, out_len, _uptr, out_type, pasid_log2,
         caps) = struct.unpack(HW_INFO_FMT, bytes(req))
        if out_len <= data_len:
            break
        data_len = out_len  # the kernel has more than we asked for: ask again
    return {
        "type_id": out_type,
        "data": data.raw[:out_len],
        "data_len": out_len,
        "capabilities": caps,
        "max_pasid_log2": pasid_log2,
        "flags_sent": flags,
    }


def bind_iommufd(devfd, iommufd, device=None, context=None):
    """VFIO_DEVICE_BIND_IOMMUFD: returns the iommufd device object id.

    This is what resets a vfio-pci device (vfio_pci_core_enable ->
    pci_try_reset_function); closing ``devfd`` resets it again.
    """
    req = bytearray(struct.pack(BIND_FMT, BIND_SIZE, 0, iommufd, 0, 0))
    try:
        _ioctl(devfd, VFIO_DEVICE_BIND_IOMMUFD, req)
    except OSError as e:
        raise bind_error(e.errno, device, context)
    return struct.unpack(BIND_FMT, bytes(req))[3]


def device_feature(devfd, flags, payload_len=0, device=None):
    """VFIO_DEVICE_FEATURE with ``flags`` and a zeroed payload; returns the payload the kernel wrote.

    The device file must be bound (VFIO_DEVICE_BIND_IOMMUFD); before that every
    ioctl but the bind gets EINVAL (vfio_main.c).
    """
    buf = bytearray(struct.pack(FEATURE_HDR_FMT, FEATURE_HDR_SIZE + payload_len, flags)) + bytearray(payload_len)
    try:
        _ioctl(devfd, VFIO_DEVICE_FEATURE, buf)
    except OSError as e:
        raise feature_error(e.errno, device, flags)
    return bytes(buf[FEATURE_HDR_SIZE:])


def _unsupported(e):
    return {"supported": False, "errno": e.errno, "error": e.as_dict()}


def probe_migration(devfd, device=None):
    """What QEMU's vfio_migration_query_flags() asks (hw/vfio/migration.c).

    VFIO_DEVICE_FEATURE with GET|MIGRATION and a struct vfio_device_feature_migration
    payload (argsz 16). ``supported`` is what QEMU requires to migrate the device:
    the GET succeeds and STOP_COPY is set (without it QEMU gets -EOPNOTSUPP).
    """
    flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION
    try:
        data = device_feature(devfd, flags, struct.calcsize(MIGRATION_FMT), device)
    except IommuError as e:
        return dict(_unsupported(e), request=feature_request_name(flags))
    raw = struct.unpack(MIGRATION_FMT, data)[0]
    return {
        "supported": bool(raw & VFIO_MIGRATION_STOP_COPY),
        "flags": {"stop_copy": bool(raw & VFIO_MIGRATION_STOP_COPY),
                  "p2p": bool(raw & VFIO_MIGRATION_P2P),
                  "pre_copy": bool(raw & VFIO_MIGRATION_PRE_COPY)},
        "raw": raw,
        "request": feature_request_name(flags),
    }


def probe_dma_logging(devfd, device=None):
    """What QEMU's vfio_dma_logging_supported() asks: PROBE|DMA_LOGGING_START, no payload (argsz 8).

    Success means the device can track its own DMA writes (device dirty page tracking).
    """
    flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_DMA_LOGGING_START
    try:
        device_feature(devfd, flags, 0, device)
    except IommuError as e:
        return dict(_unsupported(e), request=feature_request_name(flags))
    return {"supported": True, "request": feature_request_name(flags)}


def probe_features(devfd, device=None):
    """The VFIO_DEVICE_FEATURE probes QEMU makes, on a bound device file. Never raises IommuError."""
    return {"source": "vfio:VFIO_DEVICE_FEATURE",
            "migration": probe_migration(devfd, device),
            "dma_logging": probe_dma_logging(devfd, device)}


def query_device(cdev_path, in_type=None, device=None, context=None, dev_iommu=DEV_IOMMU):
    """Bind the VFIO cdev to a fresh iommufd context and read its hw_info and VFIO features.

    Opens and closes everything it opened, also on failure. The device is
    reset by the bind and again by the close (see bind_iommufd). The feature
    probes only read (GET / PROBE); their failures are part of the answer
    (``features``), not exceptions.
    """
    iommufd = _open(dev_iommu, device)
    try:
        devfd = _open(cdev_path, device)
        try:
            dev_id = bind_iommufd(devfd, iommufd, device, context)
            features = probe_features(devfd, device)
            try:
                info = get_hw_info(iommufd, dev_id, in_type, device)
            except IommuError as e:
                e.features = features  # the device was opened: its features are still facts
                raise
            info["dev_id"] = dev_id
            info["features"] = features
            return info
        finally:
            os.close(devfd)
    finally:
        os.close(iommufd)


def query_features(cdev_path, device=None, context=None, dev_iommu=DEV_IOMMU):
    """Bind a VFIO cdev to a fresh iommufd context and read only its VFIO features.

    For mediated devices: they bind as emulated devices (an iommufd ACCESS object,
    no IOMMU of their own), so there is no IOMMU_GET_HW_INFO to ask - QEMU does not
    ask it either. Returns {'dev_id', 'features'}. Raises IommuError when the
    open or the bind fails.
    """
    iommufd = _open(dev_iommu, device)
    try:
        devfd = _open(cdev_path, device)
        try:
            dev_id = bind_iommufd(devfd, iommufd, device, context)
            return {"dev_id": dev_id, "features": probe_features(devfd, device)}
        finally:
            os.close(devfd)
    finally:
        os.close(iommufd)


def selftest_mock_hw_info(dev_flags=0, dev_iommu=DEV_IOMMU):
    """hw_info of an iommufd selftest mock device (kernel with CONFIG_IOMMUFD_TEST).

    IOMMU_IOAS_ALLOC, then IOMMU_TEST_CMD op MOCK_DOMAIN_FLAGS (which creates,
    binds and attaches a mock device), then IOMMU_GET_HW_INFO on its idev id.
    Touches no real device. Used by the test bed to prove the dirty-tracking
    path on a real kernel.
    """
    device = "iommufd selftest mock (dev_flags %#x)" % dev_flags
    fd = _open(dev_iommu, device)
    try:
        ioas = bytearray(struct.pack("<III", 12, 0, 0))
        try:
            _ioctl(fd, IOMMU_IOAS_ALLOC, ioas)
        except OSError as e:
            raise IommuError("ioas_alloc_failed", "IOMMU_IOAS_ALLOC failed: %s." % os.strerror(e.errno),
                             None, e.errno, "IOMMU_IOAS_ALLOC", device)
        ioas_id = struct.unpack_from("<I", ioas, 8)[0]
        cmd = bytearray(TEST_CMD_SIZE)
        struct.pack_into("<IIII", cmd, 0, TEST_CMD_SIZE, IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, ioas_id, 0)
        struct.pack_into("<I", cmd, 28, dev_flags)
        try:
            _ioctl(fd, IOMMU_TEST_CMD, cmd)
        except OSError as e:
            raise IommuError(
                "no_selftest" if e.errno == errno.ENOTTY else "selftest_failed",
                "IOMMU_TEST_CMD failed: %s%s." % (
                    os.strerror(e.errno),
                    " (kernel built without CONFIG_IOMMUFD_TEST)" if e.errno == errno.ENOTTY else ""),
                None, e.errno, "IOMMU_TEST_CMD", device)
        idev = struct.unpack_from("<I", cmd, 24)[0]
        info = get_hw_info(fd, idev, device=device)
        info["dev_id"] = idev
        return info
    finally:
        os.close(fd)
