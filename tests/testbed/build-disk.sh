#!/usr/bin/env bash
# Build (or find cached) the disk images of the disk-booted test-bed guests
# (profiles disk-grub and disk-sdboot in tests/testbed/testbed.py): guests that
# boot like hosts, through firmware, a bootloader and an initramfs from their
# own disk, so that iommu.host.kernel_args edits what the real tools read and a
# reboot brings up the new command line.
#
#   grub.raw          BIOS, MBR, one ext4 root partition; GRUB (grub-pc) in the
#                     MBR and the post-MBR gap; grub.cfg made by grub-mkconfig, so
#                     the guest's own update-grub rewrites it
#   systemd-boot.raw  UEFI (OVMF), GPT: a FAT EFI system partition (mounted at
#                     /boot/efi in the guest) with systemd-boot and a loader
#                     entry written by kernel-install, and an ext4 root;
#                     /etc/kernel/cmdline holds the command line
#
# Both hold a Debian root (systemd as init, openssh-server, python3,
# initramfs-tools, kmod, pciutils) with the test-bed kernel installed as
# /boot/vmlinuz-<release> (and /lib/modules/<release>/vmlinuz), its modules under
# /lib/modules/<release> and an initramfs made by update-initramfs. The kernel
# command line starts with intel_iommu=off: a host before provisioning.
# At boot, testbed-state.service mounts the per-guest state share (9p tag
# "testbed", see testbed.py topology_args) and installs root's authorized_keys,
# the SSH host key and the host name from it; systemd-networkd configures the
# management NIC (virtio-net) by DHCP; TESTBED-READY goes to the serial console.
#
# Needs root (debootstrap into a directory, chroot), but no mount, no loop device,
# no binfmt: the file systems are made from directories (mke2fs -d at the
# partition's offset in the image file; mkfs.fat + mcopy for the ESP), the
# partition tables by sfdisk on the file, GRUB's boot.img/core.img (grub-mkimage
# in the image's chroot) are written with dd. Nothing is mounted in the chroot.
#
# Cached in $IOMMU_HOST_CACHE/disk/<key>/ (grub.raw, systemd-boot.raw, release,
# BUILDINFO, build.log), the key being the suite, the package lists, the kernel's
# cache key (its directory name under kernel/), the recipe number and this script
# (comments excluded). Built in a temporary directory and renamed into place,
# under a lock. Prints the cache directory on its last line; progress on stderr.
#
# Usage: build-disk.sh [--kernel BZIMAGE]   (default: $TESTBED_KERNEL, else
#        build-kernel.sh's answer). Environment: IOMMU_HOST_CACHE, DEBIAN_MIRROR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
self=$here/$(basename "$0")
cache=${IOMMU_HOST_CACHE:-/var/cache/iommu-host}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=trixie
# Bump when the procedure below changes what it produces.
recipe=1
common=(systemd-sysv udev dbus openssh-server openssh-sftp-server python3 initramfs-tools zstd kmod
        pciutils iproute2 util-linux mount procps hostname)
grub_pkgs=(grub-pc)
sdboot_pkgs=(systemd-boot systemd-boot-efi)
disk_size=3G
esp_mib=256
cmdline_base="console=ttyS0 no_timer_check panic=-1"
cmdline_default="intel_iommu=off"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
log() { printf '[build-disk] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

kernel=${TESTBED_KERNEL:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=$2; shift 2 ;;
    *) die "usage: $0 [--kernel BZIMAGE]" ;;
  esac
done
if [ -z "$kernel" ]; then
  kernel=$("$here/build-kernel.sh" | tail -n 1) || die "build-kernel.sh failed"
fi
[ -s "$kernel" ] || die "kernel $kernel not found"
kdir=$(cd "$(dirname "$kernel")" && pwd)
kkey=$(basename "$kdir")
if [ -s "$kdir/release" ]; then
  release=$(cat "$kdir/release")
else  # an older cache entry without it: the version string of the bzImage header
  release=$(python3 - "$kernel" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read()
off = struct.unpack_from("<H", data, 0x20E)[0] + 0x200
print(data[off:data.index(b"\0", off)].split()[0].decode())
EOF
)
fi
[ -n "$release" ] || die "cannot tell the kernel release of $kernel"

key=$( { echo "suite=$suite"; echo "common=${common[*]}"; echo "grub=${grub_pkgs[*]}"
         echo "sdboot=${sdboot_pkgs[*]}"; echo "kernel=$kkey"; echo "recipe=$recipe"
         grep -vE '^\s*#' "$self"; } | sha256sum | cut -c1-16)
base=$cache/disk
out=$base/$key
cached() { [ -s "$out/grub.raw" ] && [ -s "$out/systemd-boot.raw" ] && [ -s "$out/BUILDINFO" ]; }
if cached; then
  log "cached: $out (kernel $release, key $key)"
  echo "$out"; exit 0
fi
[ "$(id -u)" = 0 ] || die "building needs root (debootstrap, chroot)"
"$repo/scripts/setup-debian.sh" disk >&2
mkdir -p "$base"
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "another build-disk.sh holds $base/.lock; waiting"
  flock 9
  if cached; then log "built meanwhile: $out"; echo "$out"; exit 0; fi
fi

log "building the disk images (key $key): Debian $suite, kernel $release ($kernel)"
start=$(date +%s)
rm -rf "$base"/.build-*
tmp=$base/.build-$key
mkdir -p "$tmp" "$cache/debs/$suite"
buildlog=$tmp/build.log
step() { log "[$(( $(date +%s) - start ))s] $*"; }
progress() {
  tee -a "$buildlog" | awk '/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring)/ ||
                             /^(Get|Unpacking|Setting up|Selecting|Preparing)/ {
                               n[$1 $2]++; if (n[$1 $2] % 40 != 1) next }
                             { print "[build-disk]   " $0; fflush() }' >&2
}
in_chroot() {  # in_chroot DIR CMD...: no /proc, /sys or /dev mounted
  local dir=$1; shift
  chroot "$dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
}

# ---- the common root ----------------------------------------------------------
common_root=$tmp/common
step "debootstrap --variant=minbase $suite with systemd, sshd, python3, initramfs-tools (about 2 minutes)"
debootstrap --variant=minbase --include="$(IFS=,; echo "${common[*]}")" \
    --cache-dir="$cache/debs/$suite" --keyring="$keyring" "$suite" "$common_root" "$mirror" 2>&1 | progress ||
  die "debootstrap failed (log: $buildlog)"

step "configuring the common root"
r=$common_root
printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"; chmod 755 "$r/usr/sbin/policy-rc.d"
echo testbed > "$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 testbed\n::1 localhost ip6-localhost ip6-loopback\n' > "$r/etc/hosts"
# One machine id for every guest of the image: kernel-install names the boot entries after it.
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$r/etc/machine-id"; echo >> "$r/etc/machine-id"
sed -i 's/^root:![^:]*:/root:*:/; s/^root:\*\?:/root:*:/' "$r/etc/shadow"
rm -f "$r"/etc/ssh/ssh_host_*
mkdir -p "$r/etc/ssh/sshd_config.d" "$r/usr/local/sbin" "$r/etc/systemd/network"
cat > "$r/etc/ssh/sshd_config.d/testbed.conf" <<'EOF'
# Test bed: root by key only; the host key comes from the per-guest state share.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
cat > "$r/etc/systemd/network/20-mgmt.network" <<'EOF'
# The test bed's management NIC (virtio-net, QEMU user networking): DHCP.
[Match]
Driver=virtio_net
[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
cat > "$r/usr/local/sbin/testbed-state" <<'EOF'
#!/bin/sh
# Install root's authorized_keys, the SSH host key and the host name from the
# per-guest state share of the test bed (9p tag "testbed", read-only).
share=/run/testbed/share
mkdir -p "$share"
if ! mountpoint -q "$share" &&
   ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=none testbed "$share"; then
  echo "testbed-state: no state share (9p tag testbed); keys left as they are"
  exit 0
fi
if [ -r "$share/authorized_keys" ]; then
  install -d -m 0700 /root/.ssh
  install -m 0600 "$share/authorized_keys" /root/.ssh/authorized_keys
fi
if [ -r "$share/ssh_host_ed25519_key" ]; then
  install -m 0600 "$share/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
  install -m 0644 "$share/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
fi
TESTBED_NAME=
# shellcheck disable=SC1091
[ -r "$share/guest.env" ] && . "$share/guest.env"
[ -n "$TESTBED_NAME" ] && hostname "$TESTBED_NAME"
echo "testbed-state: keys and name ($TESTBED_NAME) installed from the state share"
EOF
chmod 755 "$r/usr/local/sbin/testbed-state"
cat > "$r/etc/systemd/system/testbed-state.service" <<'EOF'
[Unit]
Description=Test bed: keys and host name from the per-guest state share
DefaultDependencies=no
After=local-fs.target
Before=ssh.service shutdown.target
Conflicts=shutdown.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/testbed-state
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
EOF
cat > "$r/etc/systemd/system/testbed-ready.service" <<'EOF'
[Unit]
Description=Test bed: say on the serial console that SSH is up
After=ssh.service testbed-state.service systemd-networkd.service
Wants=ssh.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo "TESTBED-READY $(cut -d" " -f1 /proc/uptime)" > /dev/ttyS0'
[Install]
WantedBy=multi-user.target
EOF
for unit in testbed-state.service testbed-ready.service systemd-networkd.service ssh.service; do
  in_chroot "$r" systemctl enable "$unit" >>"$buildlog" 2>&1 || die "systemctl enable $unit failed (log: $buildlog)"
done
# What a TCG guest should not spend its time on.
for unit in systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
            e2scrub_reap.service fstrim.timer man-db.timer dpkg-db-backup.timer getty@tty1.service; do
  in_chroot "$r" systemctl mask "$unit" >>"$buildlog" 2>&1 || true
done

# the test-bed kernel and its modules
mkdir -p "$r/lib/modules"
if [ -d "$kdir/modules/lib/modules/$release" ]; then
  cp -a "$kdir/modules/lib/modules/$release" "$r/lib/modules/"
else
  log "WARNING: $kdir has no modules/lib/modules/$release (an older kernel build): no loadable modules"
  mkdir -p "$r/lib/modules/$release"
  : > "$r/lib/modules/$release/modules.order"; : > "$r/lib/modules/$release/modules.builtin"
fi
cp "$kernel" "$r/boot/vmlinuz-$release"
cp "$kernel" "$r/lib/modules/$release/vmlinuz"
[ -s "$kdir/config" ] && cp "$kdir/config" "$r/boot/config-$release"
in_chroot "$r" depmod -a "$release" >>"$buildlog" 2>&1 || die "depmod failed (log: $buildlog)"

# ---- per image -----------------------------------------------------------------
# finish IMAGE-ROOT: clean apt state, drop the policy-rc.d
finish_root() {
  local d=$1
  rm -f "$d/usr/sbin/policy-rc.d"
  in_chroot "$d" apt-get clean
  rm -rf "$d"/var/lib/apt/lists/* "$d"/var/cache/apt/*.bin "$d"/var/log/*.log "$d"/tmp/* "$d"/var/tmp/*
  # /etc and /var are up to date with /usr: no ldconfig, journal catalog or hwdb rebuild at first boot
  touch -r "$d/usr" "$d/etc/.updated" "$d/var/.updated"
}
install_pkgs() {  # install_pkgs DIR PKG...
  local d=$1; shift
  in_chroot "$d" apt-get -q update 2>&1 | progress || die "apt-get update in the chroot failed (log: $buildlog)"
  in_chroot "$d" apt-get install -y -q --no-install-recommends "$@" 2>&1 | progress ||
    die "apt-get install $* failed (log: $buildlog)"
}
part_field() {  # part_field IMAGE N start|size (sectors)
  sfdisk --json "$1" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1])-1]; print(p[sys.argv[2]])' "$2" "$3"
}
make_ext4() {  # make_ext4 IMAGE PARTNO UUID DIR
  local img=$1 n=$2 uuid=$3 dir=$4 s z
  s=$(part_field "$img" "$n" start); z=$(part_field "$img" "$n" size)
  mke2fs -q -F -t ext4 -L root -U "$uuid" -E "offset=$(( s * 512 )),nodiscard" -d "$dir" \
    "$img" "$(( z / 2 ))k" >>"$buildlog" 2>&1 || die "mke2fs -d failed (log: $buildlog)"
}

# -- grub: BIOS, MBR ---------------------------------------------------------------
g=$tmp/grub-root
step "grub image: copying the common root, installing ${grub_pkgs[*]}"
cp -a "$common_root" "$g"
printf '%s\n' 'grub-pc grub-pc/install_devices multiselect' 'grub-pc grub-pc/install_devices_empty boolean true' |
  in_chroot "$g" debconf-set-selections
install_pkgs "$g" "${grub_pkgs[@]}"
root_uuid=$(cat /proc/sys/kernel/random/uuid)
cat > "$g/etc/fstab" <<EOF
UUID=$root_uuid / ext4 errors=remount-ro 0 0
EOF
cat > "$g/etc/default/grub" <<EOF
# Test bed (tests/testbed/build-disk.sh). update-grub regenerates /boot/grub/grub.cfg.
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=\`( . /etc/os-release && echo \${NAME} )\`
GRUB_CMDLINE_LINUX_DEFAULT="$cmdline_default"
GRUB_CMDLINE_LINUX="$cmdline_base"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
step "grub image: update-initramfs -c -k $release"
in_chroot "$g" update-initramfs -c -k "$release" >>"$buildlog" 2>&1 || die "update-initramfs failed (log: $buildlog)"
# grub-mkconfig asks grub-probe which device holds / and /boot; in a chroot that holds nothing
# the answer is the partition the image will have. A stand-in answers for it while
# grub-mkconfig runs; the real grub-probe is back before the image is made.
step "grub image: grub-mkconfig (grub-probe answered for the image's /dev/vda1)"
mv "$g/usr/sbin/grub-probe" "$g/usr/sbin/grub-probe.real"
cat > "$g/usr/sbin/grub-probe" <<EOF
#!/bin/sh
for a in "\$@"; do case "\$a" in --target=*) t=\${a#--target=} ;; esac; done
case "\$t" in
  device) echo /dev/vda1 ;;
  disk) echo /dev/vda ;;
  fs) echo ext2 ;;
  fs_uuid) echo $root_uuid ;;
  partmap) echo msdos ;;
  abstraction|cryptodisk_uuid|partuuid) ;;
  drive) echo '(hd0,msdos1)' ;;
  compatibility_hint) echo hd0,msdos1 ;;
  hints_string) echo '--hint-bios=hd0,msdos1 --hint-efi=hd0,msdos1 --hint-baremetal=ahci0,msdos1' ;;
  *) echo "grub-probe stand-in: unknown target \$t" >&2; exit 1 ;;
esac
EOF
chmod 755 "$g/usr/sbin/grub-probe"
in_chroot "$g" grub-mkconfig -o /boot/grub/grub.cfg >>"$buildlog" 2>&1 || die "grub-mkconfig failed (log: $buildlog)"
mv "$g/usr/sbin/grub-probe.real" "$g/usr/sbin/grub-probe"
grep -q "vmlinuz-$release" "$g/boot/grub/grub.cfg" || die "grub.cfg has no entry for $release"
step "grub image: grub-mkimage (core.img for (hd0,msdos1)/boot/grub)"
in_chroot "$g" grub-mkimage -O i386-pc -o /tmp/core.img -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 >>"$buildlog" 2>&1 || die "grub-mkimage failed (log: $buildlog)"
core=$tmp/core.img; mv "$g/tmp/core.img" "$core"
cp "$g/usr/lib/grub/i386-pc/boot.img" "$tmp/boot.img"
# what grub-install puts below the prefix: the modules core.img loads (normal, linux, serial, ...)
mkdir -p "$g/boot/grub/i386-pc"
cp -a "$g"/usr/lib/grub/i386-pc/*.mod "$g"/usr/lib/grub/i386-pc/*.lst "$g/boot/grub/i386-pc/"
cp "$core" "$tmp/boot.img" "$g/boot/grub/i386-pc/"
in_chroot "$g" grub-editenv /boot/grub/grubenv create
finish_root "$g"
img=$tmp/grub.raw
truncate -s "$disk_size" "$img"
echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q "$img" >>"$buildlog" 2>&1 || die "sfdisk failed"
[ $(( ($(stat -c %s "$core") + 511) / 512 )) -lt 2047 ] || die "core.img does not fit the post-MBR gap"
# boot.img's code (446 bytes minus the disk signature area) into the MBR, the partition
# table stays; core.img from sector 1 (boot.img and diskboot.img point there by default)
dd if="$tmp/boot.img" of="$img" bs=440 count=1 conv=notrunc status=none
dd if="$core" of="$img" bs=512 seek=1 conv=notrunc status=none
step "grub image: mke2fs -d (ext4 root partition)"
make_ext4 "$img" 1 "$root_uuid" "$g"

# -- systemd-boot: UEFI, GPT --------------------------------------------------------
s=$tmp/sdboot-root
step "systemd-boot image: copying the common root, installing ${sdboot_pkgs[*]}"
cp -a "$common_root" "$s"
install_pkgs "$s" "${sdboot_pkgs[@]}"
img=$tmp/systemd-boot.raw
truncate -s "$disk_size" "$img"
root_uuid=$(cat /proc/sys/kernel/random/uuid)
root_partuuid=$(cat /proc/sys/kernel/random/uuid)
esp_serial=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
printf 'label: gpt\nstart=2048, size=%dMiB, type=U, name=ESP\ntype=L, name=root, uuid=%s\n' \
  "$esp_mib" "$root_partuuid" | sfdisk -q "$img" >>"$buildlog" 2>&1 || die "sfdisk failed"
cat > "$s/etc/fstab" <<EOF
UUID=$root_uuid / ext4 errors=remount-ro 0 0
UUID=${esp_serial:0:4}-${esp_serial:4:4} /boot/efi vfat umask=0077,nofail 0 2
EOF
mkdir -p "$s/boot/efi" "$s/etc/kernel"
echo "root=PARTUUID=$root_partuuid ro $cmdline_base $cmdline_default" > "$s/etc/kernel/cmdline"
echo "layout=bls" > "$s/etc/kernel/install.conf"
step "systemd-boot image: update-initramfs -c -k $release"
in_chroot "$s" update-initramfs -c -k "$release" >>"$buildlog" 2>&1 || die "update-initramfs failed (log: $buildlog)"
# The ESP's contents are staged in /boot/efi, here a plain directory, and copied into the FAT
# partition below. What `bootctl install` does (it refuses a directory that is not a mount
# point): systemd-boot as EFI/systemd/systemd-bootx64.efi and as the removable-media default
# EFI/BOOT/BOOTX64.EFI (so OVMF boots it without a Boot#### variable), loader/loader.conf.
step "systemd-boot image: systemd-boot into the ESP, kernel-install add $release (ESP staged in a directory)"
esp=$s/boot/efi
mkdir -p "$esp/EFI/systemd" "$esp/EFI/BOOT" "$esp/loader/entries"
cp "$s/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$esp/EFI/systemd/systemd-bootx64.efi"
cp "$s/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$esp/EFI/BOOT/BOOTX64.EFI"
printf 'timeout 0\nconsole-mode keep\n' > "$esp/loader/loader.conf"
echo type1 > "$esp/loader/entries.srel"
# BOOT_ROOT names the ESP (kernel-install's own search wants a mounted FAT partition)
in_chroot "$s" env BOOT_ROOT=/boot/efi kernel-install add "$release" \
  "/boot/vmlinuz-$release" "/boot/initrd.img-$release" >>"$buildlog" 2>&1 ||
  die "kernel-install failed (log: $buildlog)"
# 90-loaderentry.install writes paths relative to the ESP's mount point, which it cannot find
# in a chroot without /proc: make them relative to the ESP (what it writes in the guest).
sed -i -E 's#^(linux|initrd)( +)/boot/efi/#\1\2/#' "$esp"/loader/entries/*.conf
ls "$s"/boot/efi/loader/entries/*"$release"*.conf >/dev/null 2>&1 || die "kernel-install wrote no loader entry"
esp=$tmp/esp
rm -rf "$esp"; mv "$s/boot/efi" "$esp"; mkdir -p "$s/boot/efi"
grep -q '^linux */[0-9a-f]\{32\}/' "$esp"/loader/entries/*.conf || die "unexpected loader entry: $(cat "$esp"/loader/entries/*.conf)"
finish_root "$s"
ps=$(part_field "$img" 1 start); pz=$(part_field "$img" 1 size)
step "systemd-boot image: mkfs.fat + mcopy (ESP), mke2fs -d (root)"
mkfs.fat -F 32 -s 1 -n ESP -i "$esp_serial" --offset "$ps" "$img" "$(( pz / 2 ))" >>"$buildlog" 2>&1 ||
  die "mkfs.fat failed (log: $buildlog)"
MTOOLS_SKIP_CHECK=1 mcopy -s -p -Q -i "$img@@$(( ps * 512 ))" "$esp"/* ::/ >>"$buildlog" 2>&1 ||
  die "mcopy failed (log: $buildlog)"
make_ext4 "$img" 2 "$root_uuid" "$s"

# ---- done ---------------------------------------------------------------------------
rm -rf "$common_root" "$g" "$s" "$esp" "$core" "$tmp/boot.img"
echo "$release" > "$tmp/release"
secs=$(( $(date +%s) - start ))
sizes=""
for f in grub systemd-boot; do
  sizes+=" $f.raw $(( $(stat -c %s "$tmp/$f.raw") >> 20 )) MiB virtual, $(( $(du -k "$tmp/$f.raw" | cut -f1) >> 10 )) MiB allocated;"
done
echo "suite=$suite key=$key recipe=$recipe kernel=$release ($kkey) built in ${secs}s:$sizes" > "$tmp/BUILDINFO"
rm -rf "$out"
mv "$tmp" "$out"
log "built: $out ($(cat "$out/BUILDINFO"))"
echo "$out"
