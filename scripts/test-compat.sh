#!/usr/bin/env bash
# make test-compat: the unit suite and ansible-test sanity on the OLDEST ansible-core the
# collection supports (meta/runtime.yml: 2.16) in a second virtualenv, next to `make test-unit`
# and `make test-sanity` on the newest (.venv).
# ansible-core 2.16 runs on Python 3.10-3.12 as a controller: with such a Python (Debian 12:
# python3.11) this tests 2.16. Debian 13 ships only Python 3.13, on which 2.16 and 2.17 do not
# run; there the oldest runnable release, 2.18, is tested and the script says so.
#   test-compat.sh [unit|sanity|all]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
want=${1:-all}
log() { printf '[compat] %s\n' "$*" >&2; }

py="" core=""
for v in 3.12 3.11 3.10; do
  if command -v "python$v" >/dev/null && "python$v" -c 'import venv, ensurepip' 2>/dev/null; then
    py=$(command -v "python$v"); core=2.16; break
  fi
done
if [ -z "$py" ]; then
  py=$(command -v python3); core=2.18
  log "no Python 3.10-3.12 here ($("$py" -V)): ansible-core 2.16/2.17 cannot run; testing $core, the oldest that can"
fi
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=$root/.venv-$core
stamp=$venv/.requirements.sha
want_sha=$( (cat "$root/requirements-compat.txt"; echo "ansible-core~=$core.0 $py") | sha256sum | cut -c1-64)
if [ ! -x "$venv/bin/python" ]; then log "creating $venv ($py)"; "$py" -m venv "$venv"; fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want_sha" ]; then
  log "pip install ansible-core~=$core.0 -r requirements-compat.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check "ansible-core~=$core.0" -r "$root/requirements-compat.txt" >&2
  echo "$want_sha" > "$stamp"
fi
log "$("$venv/bin/ansible" --version 2>/dev/null | sed -n 1p) on Python $pyver"

run_unit() {
  # tests that run ansible-playbook take the one next to sys.executable: this venv's.
  (cd "$root" && PATH=$venv/bin:$PATH "$venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider)
}

run_sanity() {
  local dest=$root/build/sanity-$core/ansible_collections/iommu/host
  rm -rf "$root/build/sanity-$core" && mkdir -p "$dest"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard \
     | tar --null --ignore-failed-read -cf - -T - 2>/dev/null | tar -xf - -C "$dest")
  (cd "$dest" && git init -q && git add -A)
  # ansible-test downloads get-pip from a host this machine cannot reach: the offline stand-in
  local pipv
  pipv=$("$venv/bin/python" - <<'PY' 2>/dev/null || echo 23.1.2
import re, ansible_test._internal.python_requirements as r
src = open(r.__file__).read()
m = re.search(r"pip==([0-9.]+)", src) or re.search(r"PIP_VERSION\s*=\s*['\"]([0-9.]+)", src)
print(m.group(1))
PY
)
  mkdir -p ~/.ansible/test/cache && cp "$root/tests/sanity/get_pip_offline.py" ~/.ansible/test/cache/"get_pip_${pipv//./_}.py"
  (cd "$dest" && PATH=$venv/bin:$PATH "$venv/bin/ansible-test" sanity --python "$pyver" --requirements --color no)
}

case "$want" in
  unit) run_unit ;;
  sanity) run_sanity ;;
  all) run_unit; run_sanity ;;
  *) echo "usage: $0 [unit|sanity|all]" >&2; exit 2 ;;
esac
