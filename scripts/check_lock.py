"""Check that the lock files still fit pyproject.toml (run by `make` after each install).

Usage: python scripts/check_lock.py requirements-dev.lock requirements.lock [pyproject.toml]

Each requirement of pyproject.toml (the service's, and the `dev` extra's for the dev lock)
must be pinned in the lock at a version inside its range, every pin must carry hashes,
and the service's lock must pin each package at the dev lock's version. A requirement
added to pyproject.toml without `make lock` fails here with the command to run, instead
of as an ImportError somewhere in the test suite.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# The environment the locks are made for (`--python-version 3.11`, Linux).
_ENVIRONMENT: dict[str, str] = {
    **{name: str(value) for name, value in default_environment().items()},
    "python_version": "3.11",
    "sys_platform": "linux",
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


@dataclass(frozen=True)
class Pin:
    version: Version
    hashed: bool


def read_lock(path: Path) -> dict[str, Pin]:
    """name -> its pin, from a `uv pip compile --generate-hashes` output."""
    pins: dict[str, Pin] = {}
    name: str | None = None
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match[1])
            pins[name] = Pin(Version(match[2]), hashed=False)
        elif name is not None and line.strip().startswith("--hash=sha256:"):
            pins[name] = Pin(pins[name].version, hashed=True)
    return pins


def requirements(pyproject: Path, extra: str | None) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    listed: list[str] = project["dependencies"]
    if extra is not None:
        listed = [*listed, *project["optional-dependencies"][extra]]
    return [Requirement(text) for text in listed]


def problems(lock: Path, wanted: list[Requirement]) -> list[str]:
    pins = read_lock(lock)
    found: list[str] = []
    for requirement in wanted:
        if requirement.marker is not None and not requirement.marker.evaluate(_ENVIRONMENT):
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            found.append(f"{requirement.name} is in pyproject.toml but not in {lock.name}")
        elif not requirement.specifier.contains(pinned.version, prereleases=True):
            found.append(
                f"{lock.name} pins {requirement.name}=={pinned.version}, outside "
                f"pyproject.toml's {requirement.specifier}"
            )
    unhashed = [name for name, pin in pins.items() if not pin.hashed]
    found.extend(f"{lock.name} has no hashes for {name}" for name in unhashed)
    return found


def main(dev_lock: Path, lock: Path, pyproject: Path = ROOT / "pyproject.toml") -> int:
    found = [
        *problems(dev_lock, requirements(pyproject, "dev")),
        *problems(lock, requirements(pyproject, None)),
    ]
    dev_pins = read_lock(dev_lock)
    for name, pin in read_lock(lock).items():
        dev_pin = dev_pins.get(name)
        if dev_pin is None or dev_pin.version != pin.version:
            found.append(
                f"{lock.name} pins {name}=={pin.version}, {dev_lock.name} "
                f"{dev_pin.version if dev_pin else 'not at all'}"
            )
    for problem in found:
        print(f"check_lock: {problem}", file=sys.stderr)
    if found:
        print("check_lock: the locks do not fit pyproject.toml: run `make lock`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in {3, 4}:
        sys.exit(__doc__)
    sys.exit(main(*(Path(arg) for arg in sys.argv[1:])))
