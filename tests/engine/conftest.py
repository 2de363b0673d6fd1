"""A real PostgreSQL server on loopback for the shared-storage tests, started once per test session.

The server binaries come from Debian's ``postgresql`` package (``.ci/run`` installs it; locally:
``sudo apt-get install postgresql``). Without them the PostgreSQL tests skip, saying so, except under
``CI=true``, where a missing server is a failure: CI must never pass by skipping them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _server_bin() -> Path | None:
    for candidate in (shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)):
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; Debian's package creates the "postgres" user for them.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True)
    if done.returncode != 0:
        output = done.stderr.strip() or done.stdout.strip()
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {output}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg://`` URL of a fresh, throw-away server and database."""
    pytest.importorskip("psycopg",
                        reason="the PostgreSQL driver is the 'postgres' extra: pip install 'automel[postgres]'")
    bindir = _server_bin()
    if bindir is None:
        message = "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; .ci/run should have installed them")
        pytest.skip(message)
    # Not under pytest's tmp folder: that is private to the test user, and the server runs as "postgres".
    root = Path(tempfile.mkdtemp(prefix="automel-postgres-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    _run([str(bindir / "initdb"), "-D", str(data), "-U", "automel", "--auth=trust", "-E", "UTF8", "--no-sync"])
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    _run([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"])
    try:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=automel dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE automel")
        yield f"postgresql+psycopg://automel@127.0.0.1:{port}/automel"
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
