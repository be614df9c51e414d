#!/usr/bin/env bash
# Build (or find cached) the arm64 test-bed guest's root file system (profile
# arm64-smmuv3) and the outer QEMU that runs it.
#
# The root: Debian trixie arm64, minbase, with what the guests run (python3 for
# Ansible, openssh-server, udev, kmod, pciutils, iproute2, util-linux, procps), built
# WITHOUT binfmt_misc, chroot or loop mounts, so it builds on any amd64 host CI gives:
# `debootstrap --foreign --arch=arm64` downloads every package and unpacks the
# essential ones, then every downloaded .deb is unpacked with
# `dpkg-deb --fsys-tarfile | tar -x --keep-directory-symlink` (merged /usr kept).
# No maintainer script runs, so this script does what the guest needs of them:
# /etc/passwd, /etc/group (base-passwd's masters) plus the sshd privilege-separation
# user, /etc/shadow with root key-only, the alternatives links (awk), /proc as a
# directory. sshd's host key and config come from the per-guest state share at boot
# (guest-init.sh, the same as the x86 guests'); /run/sshd is made there too.
#
# The oracle QEMU inside the root (the arm64 counterpart of build-root.sh's qemu-11.1):
# Debian's qemu-system-arm from trixie-backports for arm64 with its Depends closure (no
# Recommends), resolved and downloaded with a second private apt state
# ($IOMMU_HOST_CACHE/root-arm64/apt-arm64: APT::Architecture=arm64, sources trixie and
# trixie-backports, empty dpkg status) into $IOMMU_HOST_CACHE/debs/trixie-arm64, and
# unpacked like the first stage's packages (no maintainer script). Addressed by its
# release: /usr/local/bin/qemu-<major.minor> runs /usr/bin/qemu-system-aarch64, listed in
# /etc/testbed/ORACLES like the x86 root's (tests/testbed/oracle.py, probe_batch.py).
#
# The outer QEMU: qemu-system-aarch64 of Debian's qemu-system-arm from
# trixie-backports (11.1.x), downloaded for amd64 and unpacked with dpkg-deb -x beside
# the root under outer-qemu/ (not installed); tests/testbed/testbed.py starts it
# through the x86 test-bed root's dynamic loader and libraries (build-root.sh, which
# installs the same QEMU release for amd64), so a Debian 12 host runs QEMU 11.1.
#
# Cached in $IOMMU_HOST_CACHE/root-arm64/<key>/ (rootfs/, outer-qemu/, QEMU,
# BUILDINFO, build.log), the key being the suite, the package list, the
# qemu-system-arm version apt resolves (private apt state in
# $IOMMU_HOST_CACHE/root-arm64/apt, refreshed when older than ROOT_APT_MAX_AGE
# seconds, default one day), and this script (comments excluded). Built in a
# temporary directory and renamed into place, under a lock. Prints the rootfs path on
# its last line; progress goes to stderr.
#
# Needs root (debootstrap; device nodes and file ownership in the root).
# Environment: IOMMU_HOST_CACHE (default /var/cache/iommu-host), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), ROOT_APT_MAX_AGE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
self=$here/$(basename "$0")
cache=${IOMMU_HOST_CACHE:-/var/cache/iommu-host}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
max_age=${ROOT_APT_MAX_AGE:-86400}
suite=trixie
arch=arm64
packages=(python3 openssh-server openssh-sftp-server udev kmod pciutils iproute2 util-linux mount
          procps hostname)
qemu_pkg=qemu-system-arm
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
log() { printf '[build-root-arm64] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] && return 0
  command -v sudo >/dev/null || die "needs root (debootstrap) and sudo is not installed"
  log "re-running as root (sudo) to $1"
  exec sudo IOMMU_HOST_CACHE="$cache" DEBIAN_MIRROR="$mirror" ROOT_APT_MAX_AGE="$max_age" "$self"
}

host=$(cat /etc/debian_version 2>/dev/null || echo unknown)
base=$cache/root-arm64

# ---- resolve the outer QEMU's version with a private apt state ----------------
aptdir=$base/apt
if [ ! -s "$aptdir/sources.list" ]; then
  need_root "create $aptdir"
  mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
  : > "$aptdir/status"
  cat > "$aptdir/sources.list" <<EOF
deb [signed-by=$keyring] $mirror $suite-backports main
EOF
fi
apt_opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
          -o "Dir::State::Lists=$aptdir/lists" -o "Dir::State::status=$aptdir/status"
          -o "Dir::Cache=$aptdir/cache" -o APT::Architecture=amd64 -o APT::Architectures=amd64
          -o APT::Sandbox::User=root)
stamp=$aptdir/lists/.updated
age=$(( $(date +%s) - $(stat -c %Y "$stamp" 2>/dev/null || echo 0) ))
if [ "$age" -gt "$max_age" ]; then
  need_root "refresh $aptdir"
  log "resolving $qemu_pkg in $suite-backports (apt-get update, private state in $aptdir)"
  if apt-get "${apt_opts[@]}" -qq update >&2; then touch "$stamp"
  else log "WARNING: apt-get update failed; using the package lists already there (if any)"; fi
fi
qemu_version=$(apt-cache "${apt_opts[@]}" madison "$qemu_pkg" 2>/dev/null |
               awk -F'|' -v s=" $suite-backports/main " '$3 ~ s {gsub(/ /, "", $2); print $2; exit}')
if [ -z "$qemu_version" ]; then
  cached=$(find "$base" -mindepth 2 -maxdepth 2 -name QEMU -printf '%T@ %h\n' | sort -rn | head -n 1)
  [ -n "$cached" ] || die "cannot resolve $qemu_pkg in $suite-backports (no network?) and no root is cached"
  log "WARNING: cannot resolve $qemu_pkg; using the newest cached arm64 root"
  echo "${cached#* }/rootfs"; exit 0
fi

key=$( { echo "suite=$suite"; echo "arch=$arch"; echo "packages=${packages[*]}"; echo "qemu=$qemu_version"
         grep -vE '^\s*#' "$self"; } | sha256sum | cut -c1-16)
out=$base/$key
cached() { [ -s "$out/QEMU" ] && [ -x "$out/rootfs/usr/local/sbin/testbed-init" ]; }
if cached; then
  log "cached: $out/rootfs (outer QEMU $qemu_version, key $key)"
  echo "$out/rootfs"; exit 0
fi
need_root "build $out"
"$repo/scripts/setup-debian.sh" root >&2
[ -e "/usr/share/debootstrap/scripts/$suite" ] ||
  die "this debootstrap (host Debian $host) does not know $suite; install a newer debootstrap"
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "another build-root-arm64.sh holds $base/.lock; waiting"
  flock 9
  if cached; then log "built meanwhile: $out/rootfs"; echo "$out/rootfs"; exit 0; fi
fi

# ---- build -------------------------------------------------------------------
log "building the $suite $arch root (key $key; host Debian $host), outer QEMU $qemu_pkg $qemu_version"
start=$(date +%s)
rm -rf "$base"/.build-*
tmp=$base/.build-$key
rootfs=$tmp/rootfs
mkdir -p "$rootfs" "$cache/debs/$suite-$arch"
buildlog=$tmp/build.log
progress() {
  tee -a "$buildlog" | awk '/^I: (Retrieving|Validating|Extracting)/ { n[$2]++; if (n[$2] % 40 != 1) next }
                             { print "[build-root-arm64]   " $0; fflush() }' >&2
}

log "debootstrap --foreign --arch=$arch --variant=minbase $suite (first stage only: no binfmt needed)"
debootstrap --foreign --arch="$arch" --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
    --cache-dir="$cache/debs/$suite-$arch" --keyring="$keyring" "$suite" "$rootfs" "$mirror" 2>&1 | progress ||
  die "debootstrap failed (log: $buildlog)"

# Unpack every package the first stage downloaded (it unpacked only the essential ones).
[ -s "$rootfs/debootstrap/debpaths" ] || die "debootstrap left no debootstrap/debpaths"
n=0
declare -A unpacked=()
while read -r _pkg path; do
  deb=$rootfs$path
  [ -s "$deb" ] || die "missing $deb"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$rootfs" --keep-directory-symlink -f - ||
    die "cannot unpack $deb"
  unpacked[$(basename "$deb")]=1
  n=$((n + 1))
done < "$rootfs/debootstrap/debpaths"
log "unpacked $n packages"

log "doing what the maintainer scripts would have done"
# /proc: the first stage leaves a symlink to the host's /proc
rm -f "$rootfs/proc"; mkdir -p "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/run" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
# users and groups: base-passwd's masters, the sshd privilege-separation user
# (passwords in /etc/shadow and /etc/gshadow, "x" in passwd and group: what shadowconfig/pwconv leave)
awk -F: -v OFS=: '{ $2 = "x"; print }' "$rootfs/usr/share/base-passwd/passwd.master" > "$rootfs/etc/passwd"
awk -F: -v OFS=: '{ $2 = "x"; print }' "$rootfs/usr/share/base-passwd/group.master" > "$rootfs/etc/group"
grep -q '^sshd:' "$rootfs/etc/passwd" || echo 'sshd:x:100:65534::/run/sshd:/usr/sbin/nologin' >> "$rootfs/etc/passwd"
awk -F: '{ printf "%s:%s:20000:0:99999:7:::\n", $1, "*" }' "$rootfs/etc/passwd" > "$rootfs/etc/shadow"
awk -F: '{ printf "%s:*::\n", $1 }' "$rootfs/etc/group" > "$rootfs/etc/gshadow"
chmod 0640 "$rootfs/etc/shadow" "$rootfs/etc/gshadow"
chgrp 42 "$rootfs/etc/shadow" "$rootfs/etc/gshadow" 2>/dev/null || true
# alternatives the guest uses
[ -e "$rootfs/usr/bin/awk" ] || ln -s mawk "$rootfs/usr/bin/awk"
echo "127.0.0.1 localhost" > "$rootfs/etc/hosts"
mkdir -p "$rootfs/media" "$rootfs/usr/local/sbin" "$rootfs/usr/local/bin" "$rootfs/etc/testbed" \
         "$rootfs/var/lib/testbed" "$rootfs/root"
[ -x "$rootfs/usr/bin/python3" ] || die "no /usr/bin/python3 in the root"
[ -x "$rootfs/usr/sbin/sshd" ] || die "no /usr/sbin/sshd in the root"
[ -x "$rootfs/usr/sbin/switch_root" ] || die "no /usr/sbin/switch_root in the root"
file_says=$(od -An -tx1 -j18 -N2 "$rootfs/usr/bin/python3.13" | tr -d ' ')
[ "$file_says" = b700 ] || die "python3.13 is not an arm64 ELF (e_machine $file_says)"
rm -rf "$rootfs/debootstrap" "$rootfs"/var/cache/apt/archives/*.deb
cat > "$rootfs/usr/local/sbin/testbed-init" <<'EOF'
#!/bin/sh
# PID 1 of a test-bed guest (built into the arm64 root by tests/testbed/build-root-arm64.sh).
# Mounts the per-guest state share (9p tag "testbed", read-only) and runs the test
# bed's init script from it, so guest-init.sh can change without rebuilding the root.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mountpoint -q /dev || mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mkdir -p /run/testbed/share
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=none testbed /run/testbed/share &&
   [ -r /run/testbed/share/guest-init.sh ]; then
  exec /bin/sh /run/testbed/share/guest-init.sh
fi
echo "testbed-init: FATAL: no guest-init.sh on the state share (9p tag testbed)"
exec /bin/sh
EOF
chmod 755 "$rootfs/usr/local/sbin/testbed-init"

# ---- the oracle QEMU in the root (arm64, unpacked with its Depends closure) ----
up=${qemu_version#*:}; up=${up%%[-+~]*}; rel=${up%.*}
aptarm=$base/apt-arm64
debs=$cache/debs/$suite-$arch
mkdir -p "$aptarm/lists/partial" "$aptarm/cache" "$debs/partial"
: > "$aptarm/status"
cat > "$aptarm/sources.list" <<EOF
deb [signed-by=$keyring] $mirror $suite main
deb [signed-by=$keyring] $mirror $suite-backports main
EOF
arm_opts=(-o "Dir::Etc::SourceList=$aptarm/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
          -o "Dir::State::Lists=$aptarm/lists" -o "Dir::State::status=$aptarm/status"
          -o "Dir::Cache=$aptarm/cache" -o "Dir::Cache::archives=$debs"
          -o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o APT::Sandbox::User=root
          -o APT::Install-Recommends=false -o APT::Install-Suggests=false)
log "resolving the oracle $qemu_pkg $qemu_version for $arch and its Depends (private apt state in $aptarm)"
apt-get "${arm_opts[@]}" -q update 2>&1 | progress || die "apt-get update ($arch) failed (log: $buildlog)"
# what apt installs on an empty system: the Depends closure, "package version arch" per line
closure=$(apt-get "${arm_opts[@]}" -s -t "$suite-backports" install "$qemu_pkg=$qemu_version" 2>>"$buildlog" |
          awk '/^Inst / && match($0, /\[[a-z0-9]+\]\)/) { print $2, substr($3, 2), substr($0, RSTART + 1, RLENGTH - 3) }') ||
  die "apt cannot resolve $qemu_pkg=$qemu_version for $arch (log: $buildlog)"
[ -n "$closure" ] || die "apt resolved nothing for $qemu_pkg=$qemu_version ($arch) (log: $buildlog)"
log "downloading $(wc -l <<<"$closure") packages for $arch into $debs (kept there)"
apt-get "${arm_opts[@]}" -q -y --download-only -t "$suite-backports" install "$qemu_pkg=$qemu_version" 2>&1 |
  progress || die "apt-get --download-only $qemu_pkg=$qemu_version ($arch) failed (log: $buildlog)"
q=0
while read -r pkg ver parch; do
  file=${pkg}_${ver//:/%3a}_${parch}.deb
  [ -s "$debs/$file" ] || die "apt did not download $file (log: $buildlog)"
  [ -n "${unpacked[$file]:-}" ] && continue       # the first stage unpacked it already
  dpkg-deb --fsys-tarfile "$debs/$file" | tar -x -C "$rootfs" --keep-directory-symlink -f - ||
    die "cannot unpack $debs/$file"
  unpacked[$file]=1
  q=$((q + 1))
done <<<"$closure"
log "unpacked $q more packages for the oracle QEMU ($(wc -l <<<"$closure") in its closure)"
oracle_bin=$rootfs/usr/bin/qemu-system-aarch64
[ -x "$oracle_bin" ] || die "no /usr/bin/qemu-system-aarch64 in the root after unpacking $qemu_pkg"
[ "$(od -An -tx1 -j18 -N2 "$oracle_bin" | tr -d ' ')" = b700 ] || die "qemu-system-aarch64 is not an arm64 ELF"
# every shared library it needs is in the root (it cannot be run here: no binfmt)
if command -v readelf >/dev/null; then
  for lib in $(readelf -d "$oracle_bin" | awk '/NEEDED/ { gsub(/\[|\]/, "", $NF); print $NF }'); do
    [ -e "$rootfs/usr/lib/aarch64-linux-gnu/$lib" ] || [ -e "$rootfs/usr/lib/$lib" ] ||
      die "qemu-system-aarch64 needs $lib, which is not in the root"
  done
fi
rm -rf "${rootfs:?}/usr/share/doc" "${rootfs:?}/usr/share/man" "${rootfs:?}/usr/share/lintian"
cat > "$rootfs/usr/local/bin/qemu-$rel" <<EOF
#!/bin/sh
# QEMU $qemu_version (Debian $suite-backports, $arch), unpacked in this root by build-root-arm64.sh.
exec /usr/bin/qemu-system-aarch64 "\$@"
EOF
chmod 755 "$rootfs/usr/local/bin/qemu-$rel"
printf '# release upstream debian-version wrapper suite\n%s %s %s /usr/local/bin/qemu-%s %s-backports\n' \
  "$rel" "$up" "$qemu_version" "$rel" "$suite" > "$rootfs/etc/testbed/ORACLES"
cp "$rootfs/etc/testbed/ORACLES" "$tmp/ORACLES"

# ---- the outer QEMU (amd64, not installed) -------------------------------------
log "downloading $qemu_pkg $qemu_version (amd64) for the outer QEMU"
mkdir -p "$tmp/dl"
(cd "$tmp/dl" && apt-get "${apt_opts[@]}" -q download "$qemu_pkg=$qemu_version") 2>&1 | progress ||
  die "apt-get download $qemu_pkg=$qemu_version failed (log: $buildlog)"
dpkg-deb -x "$tmp"/dl/*.deb "$tmp/outer-qemu"
rm -rf "$tmp/dl" "$tmp/outer-qemu/usr/share/doc" "$tmp/outer-qemu/usr/share/man"
[ -x "$tmp/outer-qemu/usr/bin/qemu-system-aarch64" ] || die "no qemu-system-aarch64 in $qemu_pkg"
up=${qemu_version#*:}; up=${up%%[-+~]*}
printf 'qemu-system-aarch64 %s %s %s-backports outer-qemu/usr/bin/qemu-system-aarch64\n' \
  "$up" "$qemu_version" "$suite" > "$tmp/QEMU"

size=$(du -sm "$rootfs" | cut -f1)
echo "suite=$suite arch=$arch key=$key built in $(( $(date +%s) - start ))s on host Debian $host, ${size} MB, $n packages + $q for the oracle QEMU $up" \
  > "$tmp/BUILDINFO"
cp "$tmp/BUILDINFO" "$rootfs/etc/testbed/BUILDINFO"
rm -rf "$out"
mv "$tmp" "$out"
log "built: $out/rootfs ($(cat "$out/BUILDINFO"))"
echo "$out/rootfs"
