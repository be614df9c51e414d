"""Environment for running the venv's ansible-doc / ansible-playbook against this checkout in unit tests."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def env(tmp_path):
    """os.environ plus the collection path, private temp dirs and a HOME under ``tmp_path``."""
    e = dict(os.environ)
    e.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, "build", "collections"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "remote"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "HOME": str(tmp_path),
    })
    return e
