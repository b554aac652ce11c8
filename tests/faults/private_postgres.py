"""A private PostgreSQL cluster of one test: ``initdb`` into a temp directory, ``pg_ctl`` start/stop on a free port.

Trust authentication on loopback only, a socket directory of its own, no fsync
(the tests kill the server processes, never the OS, so the page cache survives;
commits stay synchronous, so an ``immediate`` stop loses nothing acknowledged).
PostgreSQL refuses to run as root, so under root the commands run as the
``postgres`` system user (``runuser``) in a directory under the system temp dir
that this user owns. The system PostgreSQL server is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import tempfile
from pathlib import Path

PG_BIN_DIRS = (
    os.environ.get("TMWS_TEST_PG_BIN", ""),
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/14/bin",
)
RUN_AS_WHEN_ROOT = "postgres"
COMMAND_TIMEOUT = 180.0


def pg_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (``None`` when not installed)."""
    candidates = [Path(d) for d in PG_BIN_DIRS if d]
    if found := shutil.which("pg_ctl"):
        candidates.append(Path(found).parent)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be started here (``None`` when it can)."""
    if pg_bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS_WHEN_ROOT)
        except KeyError:
            return f"running as root and there is no {RUN_AS_WHEN_ROOT!r} user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """One PostgreSQL cluster: :meth:`init`, :meth:`start`, :meth:`stop` (any mode), :meth:`destroy`.

    Attributes:
        port: TCP port on 127.0.0.1 (the same across restarts).
        maintenance_url: ``postgresql+asyncpg://postgres@127.0.0.1:<port>/postgres``.
    """

    def __init__(self) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries are not installed")
        self._bin = bin_dir
        self._root = Path(tempfile.mkdtemp(prefix="tmws-pg-"))
        self.data_dir = self._root / "data"
        self.socket_dir = self._root / "sock"
        self.log_file = self._root / "postgres.log"
        self.port = _free_port()
        self.maintenance_url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user: str | None = None
        if os.geteuid() == 0:
            self._as_user = RUN_AS_WHEN_ROOT
            account = pwd.getpwnam(RUN_AS_WHEN_ROOT)
            os.chown(self._root, account.pw_uid, account.pw_gid)
        self.socket_dir.mkdir()
        if self._as_user is not None:
            account = pwd.getpwnam(self._as_user)
            os.chown(self.socket_dir, account.pw_uid, account.pw_gid)

    async def _run(self, *args: str) -> str:
        """Run a PostgreSQL binary (as the cluster's user); returns its output.

        Raises:
            RuntimeError: It exited non-zero.
        """
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_user is not None:
            command = ["runuser", "-u", self._as_user, "--", *command]
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(self._root)
        )
        async with asyncio.timeout(COMMAND_TIMEOUT):
            out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{text}\n{log}")
        return text

    async def init(self) -> None:
        """``initdb`` the cluster (superuser ``postgres``, trust authentication)."""
        await self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    async def start(self) -> None:
        """``pg_ctl start`` on :attr:`port` (loopback only) and wait until it accepts connections."""
        options = (
            f"-k {self.socket_dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        )
        await self._run(
            "pg_ctl", "start", "-w", "-t", "120", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options
        )

    async def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>`` (``immediate`` = a crash: no shutdown checkpoint, connections cut)."""
        await self._run("pg_ctl", "stop", "-w", "-t", "120", "-D", str(self.data_dir), "-m", mode)

    async def destroy(self) -> None:
        """Stop the cluster if it runs (immediately) and delete its directory."""
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                await self.stop("immediate")
        shutil.rmtree(self._root, ignore_errors=True)
