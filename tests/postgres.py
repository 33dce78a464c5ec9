"""A real PostgreSQL server from Debian's packages, started in a temporary directory on a Unix
socket, for the tests. As root (CI), the server runs as the `postgres` user."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

INSTALL_HINT = "install it with `apt-get install postgresql` (.ci/run does)"


def find_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    def __init__(self, root: Path):
        self.bin = find_bin_dir()
        if self.bin is None:
            raise RuntimeError(f"no PostgreSQL server binaries, so the PostgreSQL tests cannot run: {INSTALL_HINT}")
        self.root = root
        self.data, self.socket = root / "data", root / "socket"
        self.process: subprocess.Popen | None = None

    def _as_owner(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def start(self) -> PostgresServer:
        self.socket.mkdir(parents=True)
        self.data.mkdir()
        if os.geteuid() == 0:
            os.chmod(self.root, 0o755)
            shutil.chown(self.data, "postgres")
            shutil.chown(self.socket, "postgres")
        subprocess.run(self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                      "--auth=trust", "-E", "UTF8", "--no-sync"),
                       check=True, capture_output=True)
        self.log = open(self.root / "postgres.log", "wb")
        self.process = subprocess.Popen(self._as_owner(
            str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.socket), "-c", "listen_addresses=",
            "-c", "max_connections=500", "-c", "fsync=off", "-c", "shared_buffers=64MB"),
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while subprocess.run([str(self.bin / "pg_isready"), "-h", str(self.socket), "-q"]).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.root / "postgres.log").read_text())
            time.sleep(0.2)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # smart shutdown would wait for clients; SIGTERM is "fast"
            self.process.wait(60)
        self.log.close()


@contextlib.contextmanager
def temporary_server():
    """A started server in a folder of its own, outside pytest's (mode 0700, which the `postgres`
    user could not enter); stopped and removed afterwards, even if a test stopped it already."""
    root = Path(tempfile.mkdtemp(prefix="pure-api-postgres-"))
    server = PostgresServer(root)
    try:
        yield server.start()
    finally:
        if server.process is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
