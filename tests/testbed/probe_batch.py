"""Run many QEMU probes inside one test-bed guest in a single SSH call.

The guest runs the collection's own prober (plugins/module_utils/qemu_probe.py, stdlib only):
its source is sent with the job list, so the differential suite (tests/integration/
test_oracle_matrix.py) exercises the same code as the ``iommu.host.qemu_probe`` module. Each job
is ``{"binary": "/usr/local/bin/qemu-11.1", "argv": [...], "timeout": 60}``; the answer is one
:func:`qemu_probe.probe` result per job (started, migration, blocker, messages, qemu_version,
seconds ...), in order.

Background holders (a process that keeps a VFIO device open while the probes run) are started
with :func:`start_holder` and stopped with :func:`stop_holder`.
"""
from __future__ import annotations

import json
from pathlib import Path

PROBE_SOURCE = Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "qemu_probe.py"

_LOOP = r'''
import json as _json, sys as _sys
_jobs = _json.loads(_sys.stdin.read())
_out = []
for _job in _jobs:
    _out.append(probe(_job["binary"], _job["argv"], migrate=_job.get("migrate", True),
                      timeout=float(_job.get("timeout", 60))))
print(_json.dumps(_out))
'''


class BatchError(RuntimeError):
    pass


def driver_source() -> str:
    return PROBE_SOURCE.read_text() + "\n" + _LOOP


def run_batch(guest, jobs, timeout_each: float = 90) -> list:
    """Probe every job in ``guest``; a list of qemu_probe.probe() results, in the order of ``jobs``."""
    if not jobs:
        return []
    for job in jobs:
        job.setdefault("timeout", timeout_each)
    res = guest.run(["python3", "-c", driver_source()], input=json.dumps(jobs),
                    timeout=60 + sum(float(j["timeout"]) for j in jobs))
    if res.rc != 0:
        raise BatchError("%s: probe batch failed (rc %s): %s" % (guest.name, res.rc, res.stderr.strip()[-4000:]))
    try:
        out = json.loads(res.stdout)
    except ValueError:
        raise BatchError("%s: unreadable probe output: %r" % (guest.name, res.stdout[-2000:])) from None
    if len(out) != len(jobs):
        raise BatchError("%s: %d answers for %d jobs" % (guest.name, len(out), len(jobs)))
    return out


# A process that only open(2)s the device's VFIO cdev and sleeps (no iommufd bind).
HOLD_OPEN = r'''
d=/sys/bus/pci/devices/{dev}/vfio-dev
n=$(ls $d)
nohup python3 -c 'import os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); time.sleep(3600)' /dev/vfio/devices/$n \
  >/dev/null 2>&1 </dev/null &
echo $! > /run/holder-{tag}.pid
for i in $(seq 50); do ls -l /proc/$!/fd 2>/dev/null | grep -q /dev/vfio/devices/ && exit 0; sleep 0.1; done
echo "holder did not open /dev/vfio/devices/$n" >&2; exit 1
'''

# Another QEMU that binds the device to its own iommufd and stays paused.
HOLD_QEMU = r'''
nohup {binary} -machine q35,accel=tcg -nodefaults -display none -S -m 128M -monitor none -serial none \
  -object iommufd,id=fd0 -device vfio-pci,host={dev},iommufd=fd0 >/run/holder-{tag}.log 2>&1 </dev/null &
echo $! > /run/holder-{tag}.pid
for i in $(seq 300); do
  ls -l /proc/$!/fd 2>/dev/null | grep -q /dev/vfio/devices/ && ls -l /proc/$!/fd | grep -q /dev/iommu && exit 0
  kill -0 $! 2>/dev/null || break
  sleep 0.2
done
echo "holder QEMU did not bind {dev}:" >&2; cat /run/holder-{tag}.log >&2; exit 1
'''

STOP = r'''
if [ -f /run/holder-{tag}.pid ]; then kill $(cat /run/holder-{tag}.pid) 2>/dev/null; rm -f /run/holder-{tag}.pid; fi
sleep 0.5
'''


def start_holder(guest, dev, tag, qemu=None):
    """Hold ``dev`` open in ``guest``: with ``qemu`` (a binary) bound by a paused QEMU, else merely opened."""
    script = (HOLD_QEMU if qemu else HOLD_OPEN).format(dev=dev, tag=tag, binary=qemu)
    guest.run(script, timeout=120, check=True)


def stop_holder(guest, tag):
    if guest.is_running():
        guest.run(STOP.format(tag=tag), timeout=60)


MDEV_PARENT = "/sys/devices/virtual/mtty/mtty/mdev_supported_types"


def create_mdev(guest, uuid, mdev_type="mtty-2"):
    guest.run("test -e /sys/bus/mdev/devices/{u} || echo {u} > {p}/{t}/create".format(
        u=uuid, p=MDEV_PARENT, t=mdev_type), timeout=60, check=True)


def remove_mdev(guest, uuid):
    if guest.is_running():
        guest.run("test -e /sys/bus/mdev/devices/{u} && echo 1 > /sys/bus/mdev/devices/{u}/remove; true".format(
            u=uuid), timeout=60)
