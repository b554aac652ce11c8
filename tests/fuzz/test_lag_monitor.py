"""The loop-lag monitor the fuzz test relies on sees a blocked loop and ignores a sleeping process."""

from __future__ import annotations

import asyncio
import time

from fuzz_helpers import LagMonitor


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def _window(monitor: LagMonitor, block: float, sleep: float) -> tuple[float, float]:
    await asyncio.sleep(3 * LagMonitor.INTERVAL)
    monitor.begin_window()
    asyncio.get_running_loop().call_soon(_burn, block)
    asyncio.get_running_loop().call_soon(time.sleep, sleep)  # blocks the loop without using CPU
    await asyncio.sleep(0)
    await monitor.settle()
    return monitor.window()


async def test_cpu_work_on_the_loop_is_a_stall_and_a_descheduled_loop_is_not() -> None:
    monitor = LagMonitor()
    task = asyncio.create_task(monitor.run())
    try:
        cpu, wall = await _window(monitor, block=0.15, sleep=0.0)
        assert cpu >= 0.14 and wall >= 0.14
        cpu, wall = await _window(monitor, block=0.0, sleep=0.15)
        assert wall >= 0.14
        assert cpu < 0.1  # sleeping is not CPU work (margin for steal time charged to the thread)
        assert monitor.max_cpu_gap >= 0.14
    finally:
        task.cancel()
