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


class FakeKernel:
    """Emulates the two ioctls the way drivers/iommu/iommufd/device.c answers them."""

    def __init__(self, data, type_id=1, caps=0x8, pasid=0, bind_errno=None, info_errno=None):
        self.data, self.type_id, self.caps, self.pasid = data, type_id, caps, pasid
        self.bind_errno, self.info_errno = bind_errno, info_errno
        self.calls = []

    def ioctl(self, fd, request, buf, mutate=True):
        self.calls.append(request)
        if request == uapi.VFIO_DEVICE_BIND_IOMMUFD:
            if self.bind_errno:
                raise OSError(self.bind_errno, os.strerror(self.bind_errno))
            argsz, flags, _iommufd, _devid, tok = struct.unpack(uapi.BIND_FMT, bytes(buf))
            assert argsz == 24 and flags == 0 and tok == 0
            struct.pack_into("<I", buf, 12, 7)
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
    assert k.calls == [uapi.VFIO_DEVICE_BIND_IOMMUFD, uapi.IOMMU_GET_HW_INFO]
    assert info["type_id"] == 1 and info["data"] == vtd and info["data_len"] == 24
    assert info["capabilities"] == 0x8 and info["dev_id"] == 7


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
