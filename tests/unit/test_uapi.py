"""The ioctl layer: struct layouts, the call sequence, and errno -> message mapping."""
import ctypes
import errno
import os
import struct

import pytest

from ansible_collections.iommu.host.plugins.module_utils import iommu_uapi as uapi


def test_layouts_match_uapi_headers():
    # include/uapi/linux/iommufd.h: struct iommu_hw_info is 40 bytes, min size 32
    assert uapi.HW_INFO_SIZE == 40
    assert struct.calcsize("<IIIIQI") == 28  # out_max_pasid_log2 at offset 28
    assert struct.calcsize("<IIIIQIB3x") == 32  # out_capabilities at offset 32
    # include/uapi/linux/vfio.h: struct vfio_device_bind_iommufd is 24 bytes, out_devid at 12
    assert uapi.BIND_SIZE == 24
    assert struct.calcsize("<IIi") == 12
    # _IO(';', nr) == 0x3b00 | nr
    assert uapi.IOMMU_GET_HW_INFO == (0x3B << 8) | 0x8A
    assert uapi.VFIO_DEVICE_BIND_IOMMUFD == (0x3B << 8) | (100 + 18)
    assert uapi.IOMMU_TEST_CMD == (0x3B << 8) | (0x80 + 32)


def vfio_check_feature(flags, argsz, supported_ops, minsz):
    """drivers/vfio/vfio_main.c / include/linux/vfio.h vfio_check_feature(), line for line."""
    if (flags & (uapi.VFIO_DEVICE_FEATURE_GET | uapi.VFIO_DEVICE_FEATURE_SET)) & ~supported_ops:
        return -errno.EINVAL
    if flags & uapi.VFIO_DEVICE_FEATURE_PROBE:
        return 0
    if not flags & (uapi.VFIO_DEVICE_FEATURE_GET | uapi.VFIO_DEVICE_FEATURE_SET):
        return -errno.EINVAL
    if argsz < minsz:
        return -errno.EINVAL
    return 1


class FakeKernel:
    """Emulates the ioctls the way drivers/iommu/iommufd/device.c and drivers/vfio/vfio_main.c answer them.

    ``mig_flags``: the driver's migration_flags, None when it has no mig_ops (plain
    vfio-pci); ``dma_logging``: whether it has log_ops.
    """

    def __init__(self, data, type_id=1, caps=0x8, pasid=0, bind_errno=None, info_errno=None,
                 mig_flags=None, dma_logging=False, feature_errno=0):
        self.data, self.type_id, self.caps, self.pasid = data, type_id, caps, pasid
        self.bind_errno, self.info_errno = bind_errno, info_errno
        self.mig_flags, self.dma_logging, self.feature_errno = mig_flags, dma_logging, feature_errno
        self.calls = []
        self.features = []
        self.bound = False

    def feature(self, buf):
        """vfio_ioctl_device_feature(): returns 0 or -errno, writes the GET payload."""
        argsz, flags = struct.unpack_from("<II", bytes(buf), 0)
        self.features.append((argsz, flags))
        if not self.bound:
            return -errno.EINVAL  # vfio_main.c: only BIND_IOMMUFD before access is granted
        if self.feature_errno:
            return -self.feature_errno
        if argsz < 8:
            return -errno.EINVAL
        ops = uapi.VFIO_DEVICE_FEATURE_GET | uapi.VFIO_DEVICE_FEATURE_SET | uapi.VFIO_DEVICE_FEATURE_PROBE
        if flags & ~(uapi.VFIO_DEVICE_FEATURE_MASK | ops):
            return -errno.EINVAL
        if not flags & uapi.VFIO_DEVICE_FEATURE_PROBE and flags & uapi.VFIO_DEVICE_FEATURE_SET \
                and flags & uapi.VFIO_DEVICE_FEATURE_GET:
            return -errno.EINVAL
        index = flags & uapi.VFIO_DEVICE_FEATURE_MASK
        if index == uapi.VFIO_DEVICE_FEATURE_MIGRATION:
            if self.mig_flags is None:
                return -errno.ENOTTY
            ret = vfio_check_feature(flags, argsz - 8, uapi.VFIO_DEVICE_FEATURE_GET, 8)
            if ret != 1:
                return ret
            struct.pack_into("<Q", buf, 8, self.mig_flags)
            return 0
        if index == uapi.VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
            if not self.dma_logging:
                return -errno.ENOTTY
            ret = vfio_check_feature(flags, argsz - 8, uapi.VFIO_DEVICE_FEATURE_SET, 24)
            return ret if ret != 1 else 0
        return -errno.EINVAL  # default: no device_feature op

    def ioctl(self, fd, request, buf, mutate=True):
        self.calls.append(request)
        if request == uapi.VFIO_DEVICE_FEATURE:
            ret = self.feature(buf)
            if ret:
                raise OSError(-ret, os.strerror(-ret))
            return 0
        if request == uapi.VFIO_DEVICE_BIND_IOMMUFD:
            if self.bind_errno:
                raise OSError(self.bind_errno, os.strerror(self.bind_errno))
            argsz, flags, _iommufd, _devid, tok = struct.unpack(uapi.BIND_FMT, bytes(buf))
            assert argsz == 24 and flags == 0 and tok == 0
            struct.pack_into("<I", buf, 12, 7)
            self.bound = True
            return 0
        if request == uapi.IOMMU_GET_HW_INFO:
            if self.info_errno:
                raise OSError(self.info_errno, os.strerror(self.info_errno))
            size, flags, dev_id, dlen, uptr, in_type, _pasid, _caps = struct.unpack(uapi.HW_INFO_FMT, bytes(buf))
            assert size == 40 and dev_id == 7
            n = min(dlen, len(self.data))
            ctypes.memmove(uptr, self.data, n)
            struct.pack_into(uapi.HW_INFO_FMT, buf, 0, size, flags, dev_id, len(self.data), uptr,
                             self.type_id, self.pasid, self.caps)
            return 0
        raise OSError(errno.ENOTTY, "bad ioctl")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    (tmp_path / "iommu").write_text("")
    (tmp_path / "vfio0").write_text("")

    def install(kernel):
        monkeypatch.setattr(uapi.fcntl, "ioctl", kernel.ioctl)
        return kernel
    return install, str(tmp_path / "iommu"), str(tmp_path / "vfio0")


def test_query_device_sequence(fake):
    install, iommu, cdev = fake
    vtd = struct.pack("<IIQQ", 1, 0, 0xD2008C22260286, 0xF00F4A)
    k = install(FakeKernel(vtd))
    info = uapi.query_device(cdev, dev_iommu=iommu, device="0000:00:09.0")
    assert k.calls == [uapi.VFIO_DEVICE_BIND_IOMMUFD, uapi.VFIO_DEVICE_FEATURE, uapi.VFIO_DEVICE_FEATURE,
                       uapi.IOMMU_GET_HW_INFO]
    assert info["type_id"] == 1 and info["data"] == vtd and info["data_len"] == 24
    assert info["capabilities"] == 0x8 and info["dev_id"] == 7
    # plain vfio-pci: no mig_ops, no log_ops
    f = info["features"]
    assert f["source"] == "vfio:VFIO_DEVICE_FEATURE"
    assert f["migration"]["supported"] is False and f["migration"]["errno"] == errno.ENOTTY
    assert f["migration"]["error"]["code"] == "feature_not_supported"
    assert "VFIO migration is not supported in kernel" in f["migration"]["error"]["message"]
    assert f["dma_logging"] == dict(f["dma_logging"], supported=False, errno=errno.ENOTTY)


def test_query_device_asks_again_for_larger_data(fake):
    install, iommu, cdev = fake
    big = bytes(range(256)) + b"\x01" * 44  # 300 bytes, more than the first buffer
    k = install(FakeKernel(big, type_id=99))
    info = uapi.query_device(cdev, dev_iommu=iommu)
    assert info["data"] == big
    assert k.calls.count(uapi.IOMMU_GET_HW_INFO) == 2


def test_no_dev_iommu(tmp_path):
    with pytest.raises(uapi.IommuError) as e:
        uapi.query_device(str(tmp_path / "vfio0"), dev_iommu=str(tmp_path / "missing"))
    # the path differs from /dev/iommu here, so it is reported as a missing node
    assert e.value.code in ("no_iommufd", "no_vfio_cdev")


def test_no_dev_iommu_message():
    err = uapi._open_error(uapi.DEV_IOMMU, errno.ENOENT, "0000:00:09.0")
    assert err.code == "no_iommufd" and "CONFIG_IOMMUFD" in err.message and "modprobe iommufd" in err.remedy


def test_no_cdev_message():
    err = uapi._open_error("/dev/vfio/devices/vfio3", errno.ENOENT, "0000:00:09.0")
    assert err.code == "no_vfio_cdev" and "CONFIG_VFIO_DEVICE_CDEV" in err.message


def test_permission_message():
    err = uapi._open_error(uapi.DEV_IOMMU, errno.EACCES, None)
    assert err.code == "permission_denied" and "become" in err.remedy


@pytest.mark.parametrize("err,context,code,words", [
    (errno.EPERM, {"interrupt_remapping": False}, "no_interrupt_remapping", "interrupt remapping is not enabled"),
    (errno.EPERM, {}, "no_interrupt_remapping", "allow_unsafe_interrupts"),
    (errno.EPERM, {"group_other_drivers": ["0000:81:02.0 (e1000)"]}, "group_not_viable", "0000:81:02.0 (e1000)"),
    (errno.EPERM, {"in_use_by": ["99 (qemu)"]}, "in_use", "99 (qemu)"),
    (errno.EBUSY, {}, "in_use", "legacy VFIO group"),
    (errno.EINVAL, {"in_use_by": ["99 (qemu)"]}, "in_use", "another VFIO cdev"),
    (errno.EINVAL, {}, "bind_invalid", "cache coherency"),
    (errno.EAGAIN, {}, "device_locked", "reset"),
    (errno.EACCES, {}, "vf_token_required", "VF token"),
    (errno.ENOTTY, {}, "kernel_too_old", "6.6"),
    (errno.ENODEV, {}, "no_iommu_group", "IOMMU group"),
    (errno.EIO, {}, "bind_failed", "Input/output error"),
])
def test_bind_errors(err, context, code, words):
    e = uapi.bind_error(err, "0000:00:09.0", context)
    assert e.code == code and e.errno == err and e.device == "0000:00:09.0"
    assert words in e.message + " " + (e.remedy or "")
    assert "0000:00:09.0" in str(e)


@pytest.mark.parametrize("err,in_type,code", [
    (errno.ENOTTY, None, "kernel_too_old"),
    (errno.EOPNOTSUPP, None, "no_hw_info"),
    (errno.EOPNOTSUPP, 3, "type_not_supported"),
    (errno.ENOENT, None, "not_an_iommu_device"),
    (errno.EINVAL, None, "bad_request"),
    (errno.EIO, None, "hw_info_failed"),
])
def test_hw_info_errors(err, in_type, code):
    assert uapi.hw_info_error(err, "d", in_type).code == code


def test_bind_eperm_through_query(fake):
    install, iommu, cdev = fake
    install(FakeKernel(b"", bind_errno=errno.EPERM))
    with pytest.raises(uapi.IommuError) as e:
        uapi.query_device(cdev, dev_iommu=iommu, device="0000:00:09.0",
                          context={"interrupt_remapping": False})
    d = e.value.as_dict()
    assert d["code"] == "no_interrupt_remapping" and d["errno"] == "EPERM"
    assert d["step"] == "VFIO_DEVICE_BIND_IOMMUFD"


def test_kernel_reports():
    assert uapi.kernel_reports("capabilities.dirty_tracking", "6.6.0-1-amd64") is False
    assert uapi.kernel_reports("capabilities.dirty_tracking", "6.7.1") is True
    assert uapi.kernel_reports("capabilities.ats_not_supported", "7.3.4") is True
    assert uapi.kernel_reports("capabilities.pasid", "garbage") is None


# ---------------------------------------------------------------------------
# VFIO_DEVICE_FEATURE


def test_feature_numbers_match_vfio_h():
    # include/uapi/linux/vfio.h: VFIO_DEVICE_FEATURE = _IO(VFIO_TYPE, VFIO_BASE + 17)
    assert uapi.VFIO_DEVICE_FEATURE == (0x3B << 8) | (100 + 17) == 0x3B75
    assert (uapi.VFIO_DEVICE_FEATURE_GET, uapi.VFIO_DEVICE_FEATURE_SET, uapi.VFIO_DEVICE_FEATURE_PROBE) == \
        (0x10000, 0x20000, 0x40000)
    assert (uapi.VFIO_DEVICE_FEATURE_MIGRATION, uapi.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
            uapi.VFIO_DEVICE_FEATURE_DMA_LOGGING_START, uapi.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE) == (1, 2, 6, 9)
    assert (uapi.VFIO_MIGRATION_STOP_COPY, uapi.VFIO_MIGRATION_P2P, uapi.VFIO_MIGRATION_PRE_COPY) == (1, 2, 4)
    assert uapi.FEATURE_HDR_SIZE == 8


def test_probes_ask_what_qemu_asks(fake):
    """hw/vfio/migration.c: vfio_migration_query_flags() sends argsz 16 with GET|MIGRATION;
    vfio_dma_logging_supported() sends argsz 8 with PROBE|DMA_LOGGING_START."""
    install, iommu, cdev = fake
    k = install(FakeKernel(b"", mig_flags=0x7, dma_logging=True))
    info = uapi.query_features(cdev, dev_iommu=iommu, device="uuid")
    assert k.features == [(16, 0x10000 | 1), (8, 0x40000 | 6)]
    assert k.calls == [uapi.VFIO_DEVICE_BIND_IOMMUFD, uapi.VFIO_DEVICE_FEATURE, uapi.VFIO_DEVICE_FEATURE]
    mig = info["features"]["migration"]
    assert mig == {"supported": True, "flags": {"stop_copy": True, "p2p": True, "pre_copy": True},
                   "raw": 7, "request": "GET|MIGRATION"}
    assert info["features"]["dma_logging"] == {"supported": True, "request": "PROBE|DMA_LOGGING_START"}
    assert info["dev_id"] == 7


@pytest.mark.parametrize("flags,supported,names", [
    (0x1, True, {"stop_copy": True, "p2p": False, "pre_copy": False}),
    (0x5, True, {"stop_copy": True, "p2p": False, "pre_copy": True}),
    (0x2, False, {"stop_copy": False, "p2p": True, "pre_copy": False}),   # QEMU: -EOPNOTSUPP
    (0x0, False, {"stop_copy": False, "p2p": False, "pre_copy": False}),
    (0xFFFFFFFFFFFFFFF8, False, {"stop_copy": False, "p2p": False, "pre_copy": False}),
])
def test_migration_flags_decoded(fake, flags, supported, names):
    install, iommu, cdev = fake
    install(FakeKernel(b"", mig_flags=flags))
    mig = uapi.query_features(cdev, dev_iommu=iommu)["features"]["migration"]
    assert mig["supported"] is supported and mig["flags"] == names and mig["raw"] == flags


@pytest.mark.parametrize("err,code,words", [
    (errno.ENOTTY, "feature_not_supported", "does not implement"),
    (errno.EINVAL, "feature_invalid", "not bound"),
    (errno.EOPNOTSUPP, "feature_not_supported", "EOPNOTSUPP"),
    (errno.ENODEV, "device_gone", "went away"),
    (errno.EFAULT, "bad_request", "EFAULT"),
    (errno.EIO, "feature_failed", "Input/output error"),
])
def test_feature_errors(fake, err, code, words):
    install, iommu, cdev = fake
    install(FakeKernel(b"", feature_errno=err))
    f = uapi.query_features(cdev, dev_iommu=iommu, device="d")["features"]
    for probe in ("migration", "dma_logging"):
        assert f[probe]["supported"] is False and f[probe]["errno"] == err
        assert f[probe]["error"]["code"] == code and words in f[probe]["error"]["message"]
        assert f[probe]["error"]["step"].startswith("VFIO_DEVICE_FEATURE(")
        assert f[probe]["error"]["device"] == "d"


def test_unbound_device_gets_einval():
    """Before VFIO_DEVICE_BIND_IOMMUFD every other ioctl is EINVAL (vfio_main.c); mapped, not raised."""
    k = FakeKernel(b"", mig_flags=1)
    from unittest import mock
    with mock.patch.object(uapi.fcntl, "ioctl", k.ioctl):
        mig = uapi.probe_migration(3, "d")
    assert mig["supported"] is False and mig["error"]["code"] == "feature_invalid"


def test_features_survive_a_hw_info_failure(fake):
    install, iommu, cdev = fake
    install(FakeKernel(b"", info_errno=errno.EOPNOTSUPP, mig_flags=1))
    with pytest.raises(uapi.IommuError) as e:
        uapi.query_device(cdev, dev_iommu=iommu)
    assert e.value.code == "no_hw_info"
    assert e.value.features["migration"]["supported"] is True


def test_bind_failure_probes_nothing(fake):
    install, iommu, cdev = fake
    k = install(FakeKernel(b"", bind_errno=errno.EINVAL, mig_flags=1))
    with pytest.raises(uapi.IommuError) as e:
        uapi.query_features(cdev, dev_iommu=iommu, context={"in_use_by": ["9 (qemu)"]})
    assert e.value.code == "in_use" and e.value.features is None
    assert uapi.VFIO_DEVICE_FEATURE not in k.calls


def test_migration_decode_property():
    """Every 64-bit flags word: the three named bits read back, supported = STOP_COPY, raw kept."""
    from unittest import mock
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.integers(min_value=0, max_value=2 ** 64 - 1))
    def check(raw):
        k = FakeKernel(b"", mig_flags=raw)
        k.bound = True
        with mock.patch.object(uapi.fcntl, "ioctl", k.ioctl):
            mig = uapi.probe_migration(3)
        assert mig["raw"] == raw and mig["supported"] is bool(raw & 1)
        assert mig["flags"] == {"stop_copy": bool(raw & 1), "p2p": bool(raw & 2), "pre_copy": bool(raw & 4)}
    check()
