"""A throwaway PostgreSQL cluster for tests, benchmarks and local trials (never for production data).

``TempPostgres().start()`` runs ``initdb`` in a fresh temporary folder and ``pg_ctl start`` on a free port,
listening only on a Unix socket inside that folder; ``stop()`` shuts it down and deletes the folder. PostgreSQL
refuses to run as root, so when the current user is root the binaries run as the ``postgres`` user
(``runuser -u postgres``) on a folder handed over to it. Durability settings are PostgreSQL's defaults
(``fsync`` and ``synchronous_commit`` on), so what a benchmark measures is durable commits.

Binaries are looked up in ``$SUPERFACTORY_PG_BIN``, then ``pg_config --bindir``, then
``/usr/lib/postgresql/*/bin`` (newest first), then ``PATH``; :func:`find_bin_dir` returns None when none is found
(tests then skip with a message saying so).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    env = os.environ.get("SUPERFACTORY_PG_BIN")
    candidates: list[Path] = [Path(env)] if env else []
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout
            candidates.append(Path(out.strip()))
        except (OSError, subprocess.CalledProcessError):
            pass
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                           key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                                           else 0, reverse=True)]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """One throwaway cluster (see the module docstring)."""

    def __init__(self, bin_dir: Path | None = None, port: int | None = None) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found; install PostgreSQL or set "
                                    "SUPERFACTORY_PG_BIN")
        self.bin = found
        self.port = port or free_port()
        self.root: Path | None = None
        self._as_postgres = os.geteuid() == 0
        self._n = 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip() or res.stdout}")

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def start(self) -> TempPostgres:
        self.root = Path(tempfile.mkdtemp(prefix="sf-pg-"))
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8",
                  "--locale=C")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses='' -c max_connections=200 "
                "-c shared_buffers=128MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w", "-t", "60",
                  "start")
        return self

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3, Unix socket) for ``database``."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}&port={self.port}"

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a database (optionally copied from ``template``); returns its URL."""
        self._n += 1
        name = name or f"db{self._n}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
