"""The collection as users get it (make test-package).

From a copy of this checkout's tracked and new files (what a clean clone holds, plus work not
yet committed) with developer tool caches planted in it, `ansible-galaxy collection build`
must give an artifact with LICENSE and the changelog and without the caches; the artifact
installs into a playbook project through requirements.yml, passes `verify --offline`, runs the
preflight gate against localhost (report mode) from the installed copy, and the project that
vendors it is clean under ansible-lint's production profile. The execution-environment
metadata must make ansible-builder install jmespath.
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
CACHES = [".ansible/collections/ansible_collections/iommu/host/galaxy.yml", ".hypothesis/examples/x",
          ".venv/bin/python", ".venv-2.16/bin/python", "build/collections/x", ".pytest_cache/v/x",
          "tests/output/junit/x.xml", "plugins/filter/__pycache__/check.cpython-311.pyc"]


def tool(name):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        pytest.skip("%s is not installed next to the test interpreter" % name)
    return path


def run(argv, cwd, env=None, check=True):
    proc = subprocess.run(argv, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600, check=False)
    if check and proc.returncode != 0:
        pytest.fail("%s exited %d:\n%s" % (" ".join(map(str, argv)), proc.returncode, proc.stdout))
    return proc


def clean_env(tmp, collections):
    """The user's environment: no collection path, config or venv from this repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "VIRTUAL_ENV"}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_CONFIG=str(tmp / "ansible.cfg"),
               ANSIBLE_HOME=str(tmp / "ansible-home"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               PATH=BIN + os.pathsep + env.get("PATH", ""))
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    checkout = tmp / "checkout"
    checkout.mkdir()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           stdout=subprocess.PIPE, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = os.path.join(REPO, rel)
        if os.path.isfile(src):
            dst = checkout / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, str(dst))
    for rel in CACHES:                     # what ansible-lint, pytest, hypothesis and make leave behind
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("cache\n")
    dist = tmp / "dist"
    run([tool("ansible-galaxy"), "collection", "build", str(checkout), "--output-path", str(dist)], tmp)
    tarballs = sorted(dist.glob("iommu-host-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return tmp, tarballs[0]


@pytest.fixture(scope="module")
def project(built):
    """A playbook project that installs the collection from the tarball with requirements.yml."""
    tmp, tarball = built
    proj = tmp / "project"
    proj.mkdir()
    (proj / "requirements.yml").write_text("---\ncollections:\n  - name: %s\n    type: file\n" % tarball)
    (proj / "ansible.cfg").write_text("[defaults]\ncollections_path = ./collections\n"
                                      "host_key_checking = False\ninterpreter_python = auto_silent\n")
    env = clean_env(proj, proj / "collections")
    run([tool("ansible-galaxy"), "collection", "install", "-r", "requirements.yml", "-p", "collections"], proj, env)
    return proj, env


def test_artifact_has_license_changelog_and_no_caches(built):
    _tmp, tarball = built
    with tarfile.open(str(tarball)) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        license_text = tar.extractfile("LICENSE").read().decode()
    for need in ["LICENSE", "README.md", "CHANGELOG.md", "CHANGELOG.rst", "changelogs/changelog.yaml",
                 "meta/runtime.yml", "meta/execution-environment.yml", "requirements.txt", "bindep.txt",
                 "plugins/filter/check.py", "plugins/modules/iommu_facts.py", "roles/preflight/tasks/main.yml",
                 "playbooks/preflight.yml", "docs/preflight.md", "docs/docsite/extra-docs.yml"]:
        assert need in names, need
    assert "GNU GENERAL PUBLIC LICENSE" in license_text and "Version 3, 29 June 2007" in license_text
    assert manifest["collection_info"]["license"] == ["GPL-3.0-or-later"]
    with open(os.path.join(REPO, "galaxy.yml")) as f:
        version = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("version:")][0]
    assert manifest["collection_info"]["version"] == version
    assert "example.invalid" not in json.dumps(manifest)
    leaked = sorted(n for n in names if n.split("/")[0] in (
        ".ansible", ".hypothesis", ".venv", ".venv-2.16", "build", ".pytest_cache", "tests", ".ci", "scripts")
        or "__pycache__" in n or n.endswith(".pyc"))
    assert leaked == []
    # Galaxy lists a filter once per documented file: each filter is one .py holding its docs, no sidecar
    in_repo = sorted(f for f in os.listdir(os.path.join(REPO, "plugins", "filter")) if f.endswith(".py"))
    packed = sorted(n.split("/")[-1] for n in names if n.startswith("plugins/filter/") and n.count("/") == 2)
    assert packed == in_repo and in_repo, (packed, in_repo)
    with open(os.path.join(REPO, "CHANGELOG.md")) as f:
        changelog = f.read()
    assert "v0\\.1\\.0" in changelog


def test_installs_and_verifies_offline(project):
    proj, env = project
    installed = proj / "collections" / "ansible_collections" / "iommu" / "host"
    assert (installed / "LICENSE").is_file() and (installed / "MANIFEST.json").is_file()
    out = run([tool("ansible-galaxy"), "collection", "verify", "--offline", "iommu.host"], proj, env).stdout
    assert "Successfully verified that checksums for 'iommu.host:" in out, out
    # a modified file must be reported: verify is not vacuous
    (installed / "roles" / "preflight" / "defaults" / "main.yml").write_text("---\n{}\n")
    try:
        bad = run([tool("ansible-galaxy"), "collection", "verify", "--offline", "iommu.host"], proj, env, check=False)
        assert bad.returncode != 0 and "roles/preflight/defaults/main.yml" in bad.stdout, bad.stdout
    finally:
        run([tool("ansible-galaxy"), "collection", "install", "-r", "requirements.yml", "-p", "collections",
             "--force"], proj, env)


def _play(proj, env, name, text):
    """Run a playbook; its last task saves `saved` as JSON, returned with the output."""
    out = proj / (name + ".json")
    if out.exists():
        out.unlink()
    (proj / name).write_text(text + """    - name: Save
      ansible.builtin.copy:
        content: "{{ saved | to_json }}"
        dest: "%s"
        mode: "0644"
""" % out)
    penv = dict(env, ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    proc = run([tool("ansible-playbook"), "-i", "localhost,", name], proj, penv, check=False)
    assert proc.returncode == 0 and out.is_file(), proc.stdout
    with open(str(out)) as f:
        return proc.stdout, json.load(f)


def test_preflight_role_from_the_installed_artifact(project):
    """The gate on localhost, report mode, from the installed copy (not this checkout)."""
    proj, env = project
    out, saved = _play(proj, env, "gate.yml", """---
- name: Gate localhost from the installed collection
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: iommu.host.preflight
      vars:
        preflight_mode: report
        preflight_sysfs_only: true
  post_tasks:
    - name: Collect
      ansible.builtin.set_fact:
        saved:
          result: "{{ preflight_result }}"
          collection: "{{ lookup('ansible.builtin.pipe', 'ansible-galaxy collection list iommu.host') }}"
""")
    res = saved["result"]
    assert res["status"] in ("pass", "warn", "fail")
    assert res["summary"][0].startswith("localhost: ")
    assert res["findings"] and sum(res["counts"].values()) == len(res["findings"])
    assert "TASK [iommu.host.preflight : Show the preflight summary]" in out
    assert "failed=0" in out and "Warn about variable names deprecated" in out and "skipping" in out
    # the play used the installed copy, the only one on its collection path
    installed = str(proj / "collections" / "ansible_collections")
    assert installed in saved["collection"] and REPO not in saved["collection"], saved["collection"]


def test_0_1_0_variable_names_still_work(project):
    """iommu_preflight_* inputs and the iommu_preflight result survive the 0.2.0 rename."""
    proj, env = project
    out, saved = _play(proj, env, "old.yml", """---
- name: Variable names of 0.1.0
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    iommu_preflight_mode: report
    iommu_preflight_sysfs_only: true
    iommu_preflight_profiles: [pasid]
  roles:
    - role: iommu.host.preflight
  post_tasks:
    - name: Collect
      ansible.builtin.set_fact:
        saved: "{{ iommu_preflight }}"
""")
    assert "iommu.host.preflight: iommu_preflight_mode, iommu_preflight_profiles, iommu_preflight_sysfs_only - " \
           "deprecated in 0.2.0" in out.replace("\n", " ").replace("  ", " ") or "deprecated in 0.2.0" in out, out
    assert saved["profiles"] == ["pasid"]                     # the old input name reached the filter
    assert saved["status"] in ("pass", "warn", "fail")        # report mode: the play went on


def test_vendoring_project_is_lint_clean(project):
    """ansible-lint --profile production on a project that vendors the collection: nothing."""
    proj, env = project
    lint = tool("ansible-lint")
    (proj / "site.yml").write_text("""---
- name: Gate the hypervisors
  hosts: all
  gather_facts: false
  roles:
    - role: iommu.host.preflight
      vars:
        preflight_profiles: [passthrough, live_migration]
        preflight_mode: report
""")
    proc = run([lint, "--profile", "production", "--offline", "--nocolor", "-f", "pep8", "."], proj,
               dict(env, ANSIBLE_LINT_NODEPS="0"), check=False)
    assert proc.returncode == 0, proc.stdout
    linted = run([lint, "--profile", "production", "--offline", "--nocolor", "-L"], proj, env, check=False)
    assert linted.returncode == 0
    # the roles inside the vendored collection were part of the run (a violation there would fail it)
    (proj / "collections" / "ansible_collections" / "iommu" / "host" / "roles" / "preflight" / "defaults"
     / "main.yml").write_text("---\nbad_name: 1\n")
    try:
        bad = run([lint, "--profile", "production", "--offline", "--nocolor", "-f", "pep8", "."], proj, env,
                  check=False)
        assert bad.returncode != 0 and "var-naming[no-role-prefix]" in bad.stdout, bad.stdout
    finally:
        run([tool("ansible-galaxy"), "collection", "install", "-r", "requirements.yml", "-p", "collections",
             "--force"], proj, env)


def test_execution_environment_installs_jmespath(built, project):
    """ansible-builder: the EE context installs the collection and, through its metadata, jmespath."""
    tmp, tarball = built
    proj, env = project
    builder = tool("ansible-builder")
    ee = tmp / "ee"
    ee.mkdir()
    shutil.copy2(str(tarball), str(ee / tarball.name))
    (ee / "requirements.yml").write_text("---\ncollections:\n  - name: /build/%s\n    type: file\n" % tarball.name)
    (ee / "execution-environment.yml").write_text("""---
version: 3
images:
  base_image:
    name: quay.io/fedora/fedora:41
dependencies:
  ansible_core:
    package_pip: ansible-core
  ansible_runner:
    package_pip: ansible-runner
  galaxy: requirements.yml
additional_build_files:
  - src: %s
    dest: .
""" % tarball.name)
    run([builder, "create", "-f", "execution-environment.yml", "-c", "context", "-v", "3"], ee, env)
    # Containerfile for podman, Dockerfile where ansible-builder finds docker
    files = [ee / "context" / n for n in ("Containerfile", "Dockerfile") if (ee / "context" / n).is_file()]
    assert files, list((ee / "context").iterdir())
    containerfile = files[0].read_text()
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect" in containerfile                   # the builder stage reads the collections' metadata
    assert (ee / "context" / "_build" / tarball.name).is_file()
    # What that introspect step finds in the installed collection (the same command, run here):
    out = run([builder, "introspect", "--sanitize", str(proj / "collections")], proj, env).stdout
    python_section = out.split("system:")[0] if "system:" in out else out
    assert "jmespath" in python_section and "iommu.host" in python_section, out
    assert "python3" in out, out
