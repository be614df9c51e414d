"""Stand-in for ansible-test's pip bootstrap script (get-pip-<version>.py).

ansible-test bootstraps pip into each sanity virtual environment with a script
it downloads from a host that this project's machines cannot reach. This
stand-in does the same job with what the interpreter ships: `ensurepip`
installs the bundled pip, which then installs the pinned packages ansible-test
asks for (pip==X, ...) from PyPI. `make test-sanity` copies it into
~/.ansible/test/cache/get_pip_<version>.py.
"""
import subprocess
import sys


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                          stdout=subprocess.DEVNULL)
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)


if __name__ == "__main__":
    main()
