#!/usr/bin/env bash
# Build (or find cached) the test-bed kernel: Debian's linux-source-7.3 with
# virtme-ng's minimal guest config plus tests/testbed/kernel.config.
#
# The bzImage is cached outside the checkout, keyed by the source package
# version, the config fragment, this script and the virtme-ng version, so a
# second run does not rebuild. Prints the bzImage path on the last line.
# Next to it: modules/lib/modules/<release>/ (modules_install output, for the
# disk-booted guests) and release (the kernel release string).
#
# Environment: IOMMU_HOST_CACHE (default /var/cache/iommu-host),
#              KERNEL_JOBS (default: nproc + 1), VENV (python venv with vng).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${IOMMU_HOST_CACHE:-/var/cache/iommu-host}
venv=${VENV:-$root/.venv}
pkg=linux-source-7.3
# Bump when the build procedure below changes what it produces (configuration steps,
# make targets); the cache key is source version + virtme-ng version + this + the fragment.
recipe=2
fragment=$here/kernel.config
jobs=${KERNEL_JOBS:-$(( $(nproc) + 1 ))}
log() { printf '[build-kernel] %s\n' "$*" >&2; }

"$root/scripts/setup-debian.sh" kernel >&2

version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  log "package $pkg not found in apt sources (trixie-backports missing?)"; exit 1
fi
vng_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("virtme-ng"))')
key=$( { echo "$pkg=$version"; echo "virtme-ng=$vng_version"; echo "recipe=$recipe"; cat "$fragment"; } \
      | sha256sum | cut -c1-16)
out=$cache/kernel/$key
if [ -s "$out/bzImage" ]; then
  log "cached: $out/bzImage ($pkg $version, key $key)"
  echo "$out/bzImage"; exit 0
fi

log "building $pkg $version (key $key) with $jobs jobs"
work=$cache/build/$key
rm -rf "$cache/build"; mkdir -p "$work" "$cache/debs"   # also drops interrupted builds
deb=$cache/debs/${pkg}_${version//:/%3a}_all.deb
if [ ! -s "$deb" ]; then
  (cd "$cache/debs" && apt-get download "$pkg=$version" >&2)
fi
dpkg -x "$deb" "$work/pkg"
tar -C "$work" -xf "$work"/pkg/usr/src/${pkg}.tar.xz
rm -rf "$work/pkg"
src=$work/$pkg
cd "$src"
PATH=$venv/bin:$PATH vng --kconfig >&2
grep -vE '^\s*(#|$)' "$fragment" > "$work/fragment"
./scripts/kconfig/merge_config.sh -m .config "$work/fragment" >&2
make olddefconfig >&2
missing=0
while IFS= read -r line; do
  if ! grep -qx -- "$line" .config; then log "config lost after olddefconfig: $line"; missing=1; fi
done < "$work/fragment"
[ "$missing" = 0 ] || exit 1
start=$(date +%s)
# A cold build takes 15-35 minutes on 2 cores: say every minute that it is alive.
make -j"$jobs" bzImage modules >"$work/build.log" 2>&1 &
mk=$!
while kill -0 "$mk" 2>/dev/null; do
  for _ in $(seq 60); do kill -0 "$mk" 2>/dev/null || break; sleep 1; done
  kill -0 "$mk" 2>/dev/null || break
  log "still building: $(( ($(date +%s) - start) / 60 )) min, $(grep -c '^  CC ' "$work/build.log" || true) files compiled"
done
wait "$mk" || { tail -n 60 "$work/build.log" >&2; exit 1; }
make -s INSTALL_MOD_PATH="$work/mods" INSTALL_MOD_STRIP=1 modules_install >>"$work/build.log" 2>&1 \
  || { tail -n 60 "$work/build.log" >&2; exit 1; }
rm -f "$work"/mods/lib/modules/*/build "$work"/mods/lib/modules/*/source
mkdir -p "$out"
rm -rf "$out/modules"; mv "$work/mods" "$out/modules"
make -s kernelrelease > "$out/release"
cp arch/x86/boot/bzImage "$out/bzImage.tmp"
cp .config "$out/config"
echo "$pkg=$version virtme-ng=$vng_version built in $(( $(date +%s) - start ))s on $(nproc) cores" > "$out/BUILDINFO"
mv "$out/bzImage.tmp" "$out/bzImage"
cd /; rm -rf "$work"
log "built: $out/bzImage ($(cat "$out/BUILDINFO"))"
echo "$out/bzImage"
