"""Free disk space: checked before the embedded stores open or grow, so a full disk is an error, not a crash.

qdrant-edge (the embedded vector index) maps sparse files far larger than the data
they hold (≈ 170 MiB apparent per collection: two preallocated 32 MiB WAL segments
and the segment files) and fills their pages as points arrive. On a filesystem
without room for a page, touching it kills the process with ``SIGBUS``: no log line,
no error to the caller. SQLite needs room for its journal too. So, while a store
lives on a local filesystem, every write first checks that at least
``TMWS_MIN_FREE_DISK_MB`` remain there (``shutil.disk_usage``, a ``statvfs``:
microseconds), and the embedded index checks before it opens a collection:

- a write below the threshold fails ``RESOURCE_EXHAUSTED`` with reason
  ``INSUFFICIENT_DISK_SPACE`` (and ``RetryInfo``) before anything is written, and
  a WARNING names the path, the free and the required space (at most once per
  :data:`LOG_INTERVAL_SECONDS` per path);
- a start below it exits with one line (``pattern_service.startup``, exit 73);
- what was acknowledged stays: a refused write changed nothing, and a vector
  change already committed to SQL stays in the outbox until it can be applied.

The threshold must exceed what the index can touch between two checks: one batch
of points, and opening a collection (creating one touches ≈ 17 MiB, reopening an
existing one ≈ 35 MiB as its WAL segments are set up again); the default is 256 MiB.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from pattern_service.errors import DiskFullError

log = logging.getLogger(__name__)

MIB = 1024 * 1024
#: Seconds between two warnings about the same path.
LOG_INTERVAL_SECONDS = 10.0


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a store not created yet lives on the parent's filesystem)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


class FreeSpace:
    """Refuses writes while a store's filesystem has less than ``min_free_bytes`` free.

    Args:
        paths: Directories (or files) of the local stores; each is checked.
        min_free_bytes: Free bytes every path's filesystem must keep; 0 disables the check.
    """

    def __init__(self, paths: Iterable[Path], min_free_bytes: int):
        self.paths = [Path(p) for p in paths]
        self.min_free_bytes = min_free_bytes
        self._logged: dict[Path, float] = {}

    def check(self, doing: str = "write") -> None:
        """Refuse ``doing`` if a path's filesystem is below the threshold.

        Args:
            doing: What was about to happen, for the message (e.g. ``open vector collection x``).

        Raises:
            DiskFullError: ``RESOURCE_EXHAUSTED`` ``INSUFFICIENT_DISK_SPACE``, metadata
                ``path``, ``free_bytes``, ``required_bytes``.
        """
        if not self.min_free_bytes:
            return
        for path in self.paths:
            where = _existing(path)
            free = shutil.disk_usage(where).free
            if free >= self.min_free_bytes:
                continue
            message = (
                f"cannot {doing}: {free // MIB} MiB free on the filesystem of {path}, "
                f"{self.min_free_bytes // MIB} MiB required (TMWS_MIN_FREE_DISK_MB); free disk space"
            )
            now = time.monotonic()
            if now - self._logged.get(path, -LOG_INTERVAL_SECONDS) >= LOG_INTERVAL_SECONDS:
                self._logged[path] = now
                log.warning("disk nearly full: %s", message)
            raise DiskFullError(
                message,
                metadata={"path": str(path), "free_bytes": str(free), "required_bytes": str(self.min_free_bytes)},
            )
