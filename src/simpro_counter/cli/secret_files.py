"""Secrets for the commands: from the environment or a file, never from the command line.

A value in argv is visible to every user of the machine (`ps`, /proc/PID/cmdline) and
lands in shell history, so `check` and `webhooks register` take no secret as an option;
they read ADMIN_TOKEN / WEBHOOK_SECRET from the environment (or `.env`), or a file
named by `--token-file` / `--secret-file`. Like ssh with a private key, a file that its
group or other users may read or write is refused: the secret in it is no longer one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import SecretStr

from simpro_counter.cli.common import config_error_exit
from simpro_counter.errors import ConfigError


def read_secret_file(path: Path, setting: str) -> SecretStr:
    """The secret in `path`, without its trailing newline; :class:`ConfigError` (one line,
    never the contents) when missing, unreadable, empty or open to other users."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{setting} file {path} does not exist.") from None
    except OSError as exc:
        raise ConfigError(f"{setting} file {path} cannot be read: {exc.strerror}.") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{setting} file {path} is not a regular file.")
    if os.name == "posix" and mode & 0o077:
        raise ConfigError(
            f"{setting} file {path} is open to other users (mode {stat.S_IMODE(mode):04o}): "
            f"run `chmod 600 {path}`."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{setting} file {path} cannot be read: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{setting} file {path} is not UTF-8 text.") from None
    # Only the line ending goes: `echo secret > file` adds one, a secret may hold spaces.
    value = text.removesuffix("\n").removesuffix("\r")
    if not value.strip():
        raise ConfigError(f"{setting} file {path} is empty.")
    return SecretStr(value)


def secret_or_exit(path: Path | None, configured: SecretStr | None, setting: str) -> str | None:
    """The secret of `path` when given, else the configured (environment) one, else None;
    a bad file exits 2 with its one-line reason."""
    if path is None:
        value = configured.get_secret_value() if configured is not None else ""
        return value or None
    try:
        return read_secret_file(path, setting).get_secret_value()
    except ConfigError as exc:
        config_error_exit(str(exc))
