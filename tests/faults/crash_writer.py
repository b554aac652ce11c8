"""Child process of the crash test: writes that die between the SQL commit and the vector upsert.

Run as ``python tests/faults/crash_writer.py MEMORY_TEXT PATTERN_TEXT`` with the
service's ``TMWS_*`` environment. It opens the real stores
(:meth:`Application.create`), stops the background outbox pass, and replaces
``VectorSync.apply`` on that instance with a function that prints the committed
point id and then, once both writes got there, SIGKILLs this process. The
stores call ``apply`` only after their transaction committed, so the process
dies with a memory and a success pattern in SQL and neither vector written.
Exits 3 if it was not killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from pattern_service.app import Application
from pattern_service.config import Settings
from pattern_service.domain import NewMemory, SuccessPatternInput

TENANT = "default"


async def _write_both(memory_text: str, pattern_text: str) -> None:
    app = await Application.create(Settings())
    await app.sync.stop()  # only the (killed) apply could sync the writes
    committed: list[str] = []

    async def apply_then_die(collection: str, ids: Sequence[str]) -> bool:
        print(f"COMMITTED {collection} {' '.join(ids)}", flush=True)
        committed.append(collection)
        if len(committed) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.Event().wait()  # the first write waits here for the kill
        return False  # not reached

    app.sync.apply = apply_then_die  # type: ignore[method-assign]
    await asyncio.gather(
        app.memory_store.store(NewMemory(tenant_id=TENANT, content=memory_text, tags=("crash",))),
        app.learning_store.create(
            TENANT,
            SuccessPatternInput(pattern_type="crash_recovery", name="Crash-safe write", description=pattern_text),
        ),
    )


def main(argv: list[str]) -> int:
    """Write one memory and one success pattern and die in their vector sync; returns 3 if still alive."""
    if len(argv) != 2:
        raise SystemExit("usage: crash_writer.py MEMORY_TEXT PATTERN_TEXT")
    asyncio.run(_write_both(argv[0], argv[1]))
    print("NOT KILLED", flush=True)
    return 3


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
