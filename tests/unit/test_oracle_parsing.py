"""tests/testbed/oracle.py: parsing of what an oracle QEMU prints (output captured from the real binaries)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testbed"))
import oracle  # noqa: E402


def test_parse_oracle_output():
    stderr = ("qemu-system-x86_64: -device vfio-pci,host=0000:00:09.0,iommufd=fd0: warning: VFIO dma-buf not "
              "supported in kernel, using mmap fallback, P2P DMA will not work\n"
              "qemu-system-x86_64: -device vfio-pci,host=0000:00:09.0,iommufd=fd0: vfio 0000:00:09.0: "
              "Failed to set vIOMMU: aw-bits 48 > host aw-bits 39\n")
    assert oracle.parse_messages(stderr) == [
        "warning: VFIO dma-buf not supported in kernel, using mmap fallback, P2P DMA will not work",
        "vfio 0000:00:09.0: Failed to set vIOMMU: aw-bits 48 > host aw-bits 39"]
    # 10.0.13's caching-mode refusal carries no option prefix
    assert oracle.parse_messages("qemu-system-x86_64: We need to set caching-mode=on for intel-iommu to enable "
                                 "device assignment with IOMMU protection.\n") == [
        "We need to set caching-mode=on for intel-iommu to enable device assignment with IOMMU protection."]
    stdout = ('{"QMP": {"version": {"qemu": {"micro": 3, "minor": 1, "major": 11}, "package": ""}, '
              '"capabilities": ["oob"]}}\n{"return": {}}\n{"return": {}}\n'
              '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", '
              '"data": {"guest": false, "reason": "host-qmp-quit"}}\n')
    replies = oracle.parse_replies(stdout)
    assert len(replies) == 4
    res = oracle.OracleResult("11.1", [], True, 0, stderr, replies, oracle.parse_messages(stderr))
    assert res.qemu_version == "11.1.3" and res.errors == [res.messages[1]]
    found = oracle.parse_oracles("# release upstream debian-version wrapper suite\n"
                                 "11.1 11.1.3 1:11.1.3+ds-1~bpo13+1 /usr/local/bin/qemu-11.1 trixie-backports\n")
    assert found["11.1"].debian == "1:11.1.3+ds-1~bpo13+1"
    with pytest.raises(oracle.OracleError):
        oracle.parse_oracles("11.1 only-two\n")
