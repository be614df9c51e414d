#!/bin/sh
# PID 1 of a real-kernel test-bed guest (booted by tests/testbed/testbed.py).
#
# The kernel mounts the test bed's Debian root (tests/testbed/build-root.sh)
# read-only over virtio-9p and runs its /usr/local/sbin/testbed-init, which
# mounts /proc, /sys, /dev, /run and the per-guest state share
# (/run/testbed/share) and runs this script from that share.
#
# Stage 1 builds a writable root: an overlay whose lower layer is the
#   read-only 9p root and whose upper layer is the guest's own disk image
#   (virtio-blk, serial "testbed-persist", so changes survive a guest reboot)
#   or a tmpfs when there is no such disk, then switch_root's into it (which
#   moves /run, and the state share with it). The root's files are never
#   writable: QEMU exports them with readonly=on.
# Stage 2 mounts /tmp, /dev/pts, /dev/shm, mounts the per-guest state share
#   (9p tag "testbed", read-only: host key, authorized_keys, guest.env),
#   configures the management NIC (virtio-net, QEMU user networking
#   10.0.2.15/24 via 10.0.2.2), starts sshd (root, key only), prints
#   TESTBED-READY on the console and becomes a child reaper.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
say() {  # with the seconds since boot, to see where a slow boot spends its time
  up=$(cut -d' ' -f1 /proc/uptime 2>/dev/null)
  echo "testbed-init: ${up:+[$up] }$*"
}

if [ "$1" != stage2 ]; then
  say "stage 1: overlay root"
  # testbed-init has mounted these already (and the state share below /run)
  mountpoint -q /proc || mount -t proc -o nosuid,nodev,noexec proc /proc
  mountpoint -q /sys || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
  mountpoint -q /dev || mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
  mountpoint -q /run || mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
  # Scratch space on an empty directory of the read-only root; it stays
  # mounted (but invisible) below the new root after switch_root.
  scratch=/media
  mount -t tmpfs -o mode=0700 tmpfs "$scratch"
  mkdir "$scratch/newroot" "$scratch/rw"
  persist=tmpfs
  if [ -b /dev/vda ] && [ "$(cat /sys/block/vda/serial 2>/dev/null)" = testbed-persist ] &&
     mount -t ext4 -o noatime /dev/vda "$scratch/rw"; then
    persist=disk
  else
    mount -t tmpfs -o mode=0755 tmpfs "$scratch/rw"
  fi
  mkdir -p "$scratch/rw/upper" "$scratch/rw/work"
  if ! mount -t overlay overlay \
      -o "lowerdir=/,upperdir=$scratch/rw/upper,workdir=$scratch/rw/work" "$scratch/newroot"; then
    say "FATAL: cannot mount the overlay root"
    exec /bin/sh
  fi
  say "overlay root ready (upper layer on $persist)"
  # shellcheck disable=SC2093 # falls through only when switch_root fails
  exec switch_root "$scratch/newroot" "$0" stage2
  say "FATAL: switch_root failed"
  exec /bin/sh
fi

say "stage 2"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr

state=/run/testbed
mkdir -p "$state/share"
if ! mountpoint -q "$state/share" &&
   ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=none testbed "$state/share"; then
  say "FATAL: cannot mount the state share (9p tag testbed)"
fi
TESTBED_NAME=testbed
TESTBED_PROFILE=unknown
# shellcheck disable=SC1091
[ -r "$state/share/guest.env" ] && . "$state/share/guest.env"

hostname "$TESTBED_NAME"
echo "$TESTBED_NAME" > /etc/hostname
grep -q " $TESTBED_NAME\$" /etc/hosts 2>/dev/null || echo "127.0.1.1 $TESTBED_NAME" >> /etc/hosts
rm -f /etc/resolv.conf
echo "nameserver 10.0.2.3" > /etc/resolv.conf

# udev (in the root, see build-root.sh): rules under
# /etc/udev/rules.d apply at boot as on a real host (e.g. iommu.host.vfio_pci's
# persistence rule). Interface renaming is masked in this guest's overlay so the
# NICs keep their kernel names; only PCI devices are coldplugged.
udevd=/lib/systemd/systemd-udevd
if [ -x "$udevd" ]; then
  mkdir -p /etc/udev/rules.d
  ln -sfn /dev/null /etc/udev/rules.d/80-net-setup-link.rules
  if "$udevd" --daemon; then
    udevadm trigger --action=add --subsystem-match=pci
    udevadm settle --timeout=30 || say "udevadm settle timed out"
    say "udev started (PCI coldplug done)"
  else
    say "WARNING: systemd-udevd did not start"
  fi
fi

# Management NIC: the (only) virtio-net interface.
ip link set lo up
mgmt=
for dev in /sys/class/net/*; do
  drv=$(readlink "$dev/device/driver" 2>/dev/null)
  [ "${drv##*/}" = virtio_net ] && mgmt=${dev##*/}
done
if [ -n "$mgmt" ]; then
  ip addr add 10.0.2.15/24 dev "$mgmt"
  ip link set "$mgmt" up
  ip route add default via 10.0.2.2
  say "management NIC $mgmt: 10.0.2.15/24 via 10.0.2.2"
else
  say "ERROR: no virtio-net interface"
fi

# Without systemd, reboot/shutdown/poweroff/halt are shims that call reboot(2)
# (ansible.builtin.reboot runs `shutdown -r`).
for cmd in reboot shutdown poweroff halt; do
  ln -sfn "$state/share/guest-power.sh" "/usr/sbin/$cmd"
done

# root's home: a fresh Debian home (from /etc/skel), kept on the overlay so it
# survives a guest reboot.
home=/var/lib/testbed/root-home
if [ ! -d "$home" ]; then
  mkdir -p "$home"
  cp -a /etc/skel/. "$home/" 2>/dev/null
  chmod 0700 "$home"
fi
mount --bind "$home" /root

# Root logs in by key only. sshd refuses locked accounts when UsePAM is off.
sed -i 's/^root:![^:]*:/root:*:/' /etc/shadow 2>/dev/null
install -d -m 0755 /run/sshd
install -m 0600 "$state/share/ssh_host_ed25519_key" "$state/ssh_host_ed25519_key"
install -m 0644 "$state/share/ssh_host_ed25519_key.pub" "$state/ssh_host_ed25519_key.pub"
install -m 0600 "$state/share/authorized_keys" "$state/authorized_keys"
cat > "$state/sshd_config" <<EOF
Port 22
ListenAddress 0.0.0.0
HostKey $state/ssh_host_ed25519_key
AuthorizedKeysFile $state/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PidFile /run/sshd.pid
SetEnv PATH=$PATH
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
if /usr/sbin/sshd -t -f "$state/sshd_config" && /usr/sbin/sshd -f "$state/sshd_config" -E "$state/sshd.log"; then
  say "sshd started"
else
  say "ERROR: sshd did not start"
fi
say "TESTBED-READY name=$TESTBED_NAME profile=$TESTBED_PROFILE kernel=$(uname -r)"

# Reap orphans forever; ignore SIGINT (Ctrl-Alt-Del) and SIGTERM.
if [ -x /usr/bin/python3 ]; then
  exec /usr/bin/python3 -c '
import os, signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
    except OSError:
        pass
'
fi
trap '' INT TERM
while :; do sleep 3600; done
