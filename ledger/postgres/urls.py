"""``postgresql://`` URLs and database addresses: the one place a connection string is parsed.

``eventsourcing_env_from_url`` turns a libpq URL into eventsourcing's
``POSTGRES_*`` settings (``export_libpq_variables`` exports the libpq
parameters those cannot carry); ``DatabaseSettings`` is one database's address (the
embedded server hands these out) with its URL, its settings and a
``connect()``. No rule lives here.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import psycopg

__all__ = ["DatabaseSettings", "eventsourcing_env_from_url", "export_libpq_variables", "redact_url"]

CONNECT_TIMEOUT_S = 5  # libpq connect_timeout for our own connections (min 2)
PERSISTENCE_MODULE = "eventsourcing.postgres"
URL_SCHEMES = ("postgresql", "postgres")
DEFAULT_URL_PORT = "5432"

# libpq URL parameters that eventsourcing's env cannot carry. libpq reads the
# matching variables from the process environment, so the returned dict holds
# them under these names: export them (os.environ) for them to take effect.
LIBPQ_ENV_VARS = {
    "application_name": "PGAPPNAME",
    "channel_binding": "PGCHANNELBINDING",
    "client_encoding": "PGCLIENTENCODING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "gssencmode": "PGGSSENCMODE",
    "hostaddr": "PGHOSTADDR",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "options": "PGOPTIONS",
    "passfile": "PGPASSFILE",
    "require_auth": "PGREQUIREAUTH",
    "requirepeer": "PGREQUIREPEER",
    "service": "PGSERVICE",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "sslcert": "PGSSLCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslkey": "PGSSLKEY",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslrootcert": "PGSSLROOTCERT",
    "sslsni": "PGSSLSNI",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}



@dataclass(frozen=True)
class DatabaseSettings:
    """Where one database is: a libpq URL and eventsourcing's environment.

    ``host`` is a directory for unix sockets (it starts with ``/``).
    """

    dbname: str
    host: str
    port: int
    user: str
    password: str = ""

    @property
    def url(self) -> str:
        """A ``postgresql://`` URL; sockets go in ``?host=`` (libpq's convention)."""
        userinfo = quote(self.user, safe="")
        if self.password:
            userinfo += ":" + quote(self.password, safe="")
        dbname = quote(self.dbname, safe="")
        if self.host.startswith("/"):
            host = quote(self.host, safe="/")
            return f"postgresql://{userinfo}@/{dbname}?host={host}&port={self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{userinfo}@{host}:{self.port}/{dbname}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for ``eventsourcing.application.Application(env=...)``."""
        return {
            "PERSISTENCE_MODULE": PERSISTENCE_MODULE,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
        }

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Open a psycopg connection; keyword arguments go to ``psycopg.connect``."""
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        return psycopg.connect(
            dbname=self.dbname,
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            **kwargs,
        )



def eventsourcing_env_from_url(url: str) -> dict[str, str]:
    """Turn a libpq ``postgresql://`` URL into eventsourcing's environment.

    Accepts ``postgresql://``, ``postgres://`` and SQLAlchemy-style
    ``postgresql+driver://``. Follows libpq's URI rules: percent-decoding, ``host``/``port``/``user``/
    ``password``/``dbname`` query parameters override the URL's parts (``host``
    may be a socket directory), several ``host:port`` pairs are joined with
    commas (libpq and so eventsourcing accept lists). A missing port is 5432, a
    missing user is the OS user, a missing database is the user's name, a
    missing password is empty (libpq then tries ``~/.pgpass``). A host is
    required, because libpq's default socket directory depends on the build.

    eventsourcing only passes dbname, host, port, user and password to libpq.
    Other libpq parameters (``sslmode``, ``sslrootcert``, ...) are returned
    under libpq's environment variable names (``PGSSLMODE``, ...), which libpq
    reads from the process environment: export them (``export_libpq_variables``)
    or they have no effect. ``connect_timeout`` also sets
    ``POSTGRES_CONNECT_TIMEOUT``. Unknown parameters raise ``ValueError``
    rather than being dropped silently.
    """
    parts = urlsplit(url)
    if parts.scheme.split("+", 1)[0] not in URL_SCHEMES:
        raise ValueError(f"not a postgresql:// URL: {redact_url(url)}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts, ports = _split_hostlist(hostlist)
    fields = {
        "user": unquote(user),
        "password": unquote(password),
        "host": ",".join(hosts),
        "port": ",".join(ports),
        "dbname": unquote(parts.path.lstrip("/")),
    }
    extra = _apply_query(fields, parts.query)
    return _env_from_fields(fields, url) | extra


def export_libpq_variables(env: Mapping[str, str]) -> None:
    """Export ``env``'s libpq variables (``PGSSLMODE``, ...) to this process's environment.

    libpq reads them only there, and eventsourcing passes libpq nothing but
    dbname, host, port, user and password: the one place a process's
    environment is written for the database.
    """
    os.environ.update({key: value for key, value in env.items() if key.startswith("PG")})


def _split_hostlist(hostlist: str) -> tuple[list[str], list[str]]:
    """``h1:5432,[::1]:5433,h3`` -> hosts and ports ('' where none is given)."""
    hosts: list[str] = []
    ports: list[str] = []
    for item in hostlist.split(",") if hostlist else []:
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        hosts.append(unquote(host))
        ports.append(port)
    return hosts, ports


def _apply_query(fields: dict[str, str], query: str) -> dict[str, str]:
    """Fold connection parameters into ``fields``; return libpq env variables."""
    extra: dict[str, str] = {}
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        key, value = unquote(key), unquote(value)  # libpq: '+' is not a space
        if key in fields:
            fields[key] = value
        elif key in LIBPQ_ENV_VARS:
            extra[LIBPQ_ENV_VARS[key]] = value
        else:
            raise ValueError(f"unsupported connection parameter {key!r} in URL")
        if key == "connect_timeout":
            extra["POSTGRES_CONNECT_TIMEOUT"] = value
    return extra


def _env_from_fields(fields: dict[str, str], url: str) -> dict[str, str]:
    if not fields["host"]:
        raise ValueError(f"URL names no host or socket directory: {redact_url(url)}")
    user = fields["user"] or getpass.getuser()
    ports = [port or DEFAULT_URL_PORT for port in fields["port"].split(",")]
    if not all(port.isdigit() for port in ports):
        raise ValueError(f"URL has an invalid port: {redact_url(url)}")
    return {
        "PERSISTENCE_MODULE": PERSISTENCE_MODULE,
        "POSTGRES_DBNAME": fields["dbname"] or user,
        "POSTGRES_HOST": fields["host"],
        "POSTGRES_PORT": ",".join(ports),
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": fields["password"],
    }


def redact_url(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}{at}{hostlist}", query="").geturl()

