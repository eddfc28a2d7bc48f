"""The processes behind the embedded Redis: starting a child that dies with its parent,
and telling a live server of ours (valkey-server or redis-server) from a reused PID or a
zombie."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from simpro_counter.errors import StoreError

_PR_SET_PDEATHSIG = 1
LOG_TAIL_LINES = 20

_spawner_pool: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def spawner() -> ThreadPoolExecutor:
    """The thread every server is started from; it lives as long as the process.

    Linux sends the parent-death signal when the *thread* that forked the child exits,
    so starting from a short-lived thread (`asyncio.to_thread`, a request handler) would
    kill the server with that thread. This one only exits at interpreter shutdown.
    """
    global _spawner_pool
    with _spawner_lock:
        if _spawner_pool is None:
            _spawner_pool = ThreadPoolExecutor(1, thread_name_prefix="embedded-redis")
        return _spawner_pool


def die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    # Load libc before forking: the child must do as little as possible before exec.
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        # The parent may have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as dead)."""
    with contextlib.suppress(ChildProcessError):
        # Reap it if it is our child, or it would linger as a zombie and look alive.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self").exists():
        return True  # no procfs to tell a zombie from a live process
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    # A killed process is a zombie a few ms before its last thread exits and frees its
    # sockets; only a zombie with one thread left is really gone.
    zombie = fields.get("State", "").strip().startswith("Z")
    return not (zombie and fields.get("Threads", "").strip() == "1")


def is_redis_for(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a live valkey-server or redis-server working in `data_dir` (not a
    reused PID)."""
    if not pid_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    try:
        cmdline = (proc / "cmdline").read_bytes()
        # redis-server chdirs into its `dir` and rewrites its title, so the working
        # directory, not the command line, is what ties it to this data dir.
        cwd = Path(os.readlink(proc / "cwd"))
    except OSError:
        return False
    return (b"valkey-server" in cmdline or b"redis-server" in cmdline) and cwd == data_dir


def terminate_foreign(pid: int, timeout: float) -> None:
    """SIGTERM a process that is not our child, wait for it, SIGKILL after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.02)
    raise StoreError(f"Could not stop the leftover server (pid {pid}).")


def tail_log(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"
