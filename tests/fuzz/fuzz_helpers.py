"""Fuzzing helpers: a server on its own event-loop thread with a loop-lag monitor, and message strategies.

The server runs in a thread of its own so that its event loop keeps running
between hypothesis examples (the test itself is synchronous and calls it over
a real channel); the :class:`LagMonitor` task in that loop records the largest
gap between its wake-ups.

**How a stall is measured.** The monitor sleeps 5 ms at a time and records,
for each wake-up, the wall-clock gap and the CPU time the *loop thread* spent
in that gap (``time.thread_time``). Work that blocks the loop (a regex that
backtracks, a synchronous parse of a huge message, …) burns CPU on the loop
thread, so it shows in both. The OS descheduling the whole process on a
shared, loaded machine shows only in the wall-clock gap; on a virtual machine
whose steal time is charged to the running thread, it can inflate the CPU-time
gap too. So the bound (100 ms) is asserted on the CPU-time gap of a *window*
(one example), and a window over the bound is replayed: only a request that
blocks the loop every time it is sent fails the test (a stall that the code
causes reproduces; a scheduling hiccup does not). Garbage-collection pauses of
the interpreter are measured separately and excluded (their length depends on
the heap of the whole test process, not on the request); the failure message
reports them.
"""

from __future__ import annotations

import asyncio
import gc
import pathlib
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message as pb_message
from google.protobuf import message_factory, struct_pb2
from hypothesis import strategies as st
from server_helpers import make_settings, start_server

from pattern_service.server import PatternServer

T = TypeVar("T")

#: Regular expressions that stall backtracking engines or are malformed.
HOSTILE_REGEXES = [
    "(a+)+$",
    "(a*)*b",
    "(a|aa)+$",
    "(.*a){20}",
    "(",
    ")",
    "[",
    "(?P<x>a)(?P=x)",
    r"(a)\1",
    "a{1000}{1000}",
    "x{99999}",
    "(?<=a)b",
    "((((((((((((((((((((a))))))))))))))))))))",
    "|".join(f"w{i}" for i in range(2000)),
    "\\",
    "*",
    "a**",
    "(?i",
]

#: Queries that would hurt a naive matcher or router.
HOSTILE_TEXTS = [
    "a" * 9_999 + "!",
    "store " + "x" * 9_000,
    "recall " + "(a+)+$ " * 500,
    "\u0000\u0001\u200b\ufeff",
    "calculate " + "(" * 5_000 + "1" + ")" * 5_000,
    "calculate 9 ** 9 ** 9 ** 9",
    "calculate 10 ** 100000",
    "\ud7ff\ue000 \U0010ffff",
    " " * 5_000,
    "",
]

MAX_NESTING = 120  # deeper than protobuf's parse limit (100): the server must refuse, not crash


class LagMonitor:
    """Records the largest gap between wake-ups of a task in the loop it runs in.

    Gaps are kept for the whole run (:attr:`max_cpu_gap`, :attr:`max_wall_gap`)
    and for the current window (:meth:`begin_window` … :meth:`window`), so that
    a stall can be pinned on the request that was running.

    Garbage-collection pauses on the loop thread are measured too (``gc.callbacks``)
    and reported apart: their length depends on the whole test process's heap
    (every earlier test's objects), not on the request being handled, so the
    CPU gaps exclude them and :attr:`max_gc_pause` reports them.
    """

    INTERVAL = 0.005

    def __init__(self) -> None:
        self.max_cpu_gap = 0.0
        self.max_wall_gap = 0.0
        self.max_gc_pause = 0.0
        self.window_cpu_gap = 0.0
        self.window_wall_gap = 0.0
        self._gc_total = 0.0
        self._gc_started: float | None = None
        self._thread: int | None = None

    def reset(self) -> None:
        """Forget the gaps seen so far."""
        self.max_cpu_gap = self.max_wall_gap = self.max_gc_pause = 0.0
        self.begin_window()

    def begin_window(self) -> None:
        """Start a new window (its gaps are read by :meth:`window`)."""
        self.window_cpu_gap = self.window_wall_gap = 0.0

    async def settle(self) -> None:
        """Return once the monitor has woken up after everything queued before this call.

        A timer due two intervals from now fires after the monitor's own timer
        (due within one interval), so the monitor has recorded the gap that
        ended with the last piece of work.
        """
        await asyncio.sleep(2 * self.INTERVAL)

    def window(self) -> tuple[float, float]:
        """The largest ``(cpu, wall)`` gaps of the current window, in seconds."""
        return self.window_cpu_gap, self.window_wall_gap

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._gc_started = time.thread_time()
        elif self._gc_started is not None:
            pause = time.thread_time() - self._gc_started
            self._gc_total += pause
            self.max_gc_pause = max(self.max_gc_pause, pause)
            self._gc_started = None

    async def run(self) -> None:
        """Sleep :data:`INTERVAL` at a time forever, recording each gap beyond it."""
        self._thread = threading.get_ident()
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                wall, cpu, collected = time.perf_counter(), time.thread_time(), self._gc_total
                await asyncio.sleep(self.INTERVAL)
                wall_gap = time.perf_counter() - wall - self.INTERVAL
                cpu_gap = time.thread_time() - cpu - (self._gc_total - collected)
                self.max_wall_gap = max(self.max_wall_gap, wall_gap)
                self.max_cpu_gap = max(self.max_cpu_gap, cpu_gap)
                self.window_wall_gap = max(self.window_wall_gap, wall_gap)
                self.window_cpu_gap = max(self.window_cpu_gap, cpu_gap)
        finally:
            gc.callbacks.remove(self._on_gc)


class ThreadedServer:
    """A :class:`PatternServer` on an event loop in a background thread, with a :class:`LagMonitor`.

    Args:
        data_dir: Storage of the server.
        overrides: Settings overrides (see ``server_helpers.make_settings``).
    """

    def __init__(self, data_dir: pathlib.Path, **overrides: object):
        self._settings = make_settings(data_dir, **overrides)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server-loop", daemon=True)
        self.monitor = LagMonitor()
        self.server: PatternServer | None = None
        self._monitor_task: Future[None] | None = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run ``coro`` on the server's loop and return its result (``timeout`` is a hang guard)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def measure(self, work: Callable[[], T]) -> tuple[T, float, float]:
        """Run ``work`` (a blocking call to the server) in a fresh monitor window.

        Returns:
            ``(result, cpu_gap, wall_gap)``: the result of ``work`` and the
            largest loop gaps (seconds) seen while it ran.
        """
        self.monitor.begin_window()
        result = work()
        self.call(self.monitor.settle())
        cpu, wall = self.monitor.window()
        return result, cpu, wall

    def start(self) -> int:
        """Start the loop, the server and the monitor; returns the port."""
        self._thread.start()
        self.server = self.call(start_server(self._settings))
        self._monitor_task = asyncio.run_coroutine_threadsafe(self.monitor.run(), self.loop)
        return self.server.port

    def stop(self) -> None:
        """Stop the monitor, the server and the loop."""
        if self._monitor_task is not None:
            self._monitor_task.cancel()
        if self.server is not None:
            self.call(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(60)
        self.loop.close()


# ---------------------------------------------------------------- strategies

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(HOSTILE_REGEXES),
    st.sampled_from(HOSTILE_TEXTS),
    # utf-8 codec: no lone surrogates (a str protobuf cannot hold; invalid UTF-8 goes as raw bytes instead).
    st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(0, 120_000)),
    st.sampled_from(
        ["quick_calculation", "store_memory", "recall_memory", "default", "00000000-0000-0000-0000-000000000000"]
    ),
)

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), texts, st.integers(-(2**53), 2**53)
)
json_values = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth):
        value = {"n": value}
    return value


structs = st.one_of(
    st.dictionaries(st.text(max_size=12), json_values, max_size=5),
    st.integers(1, MAX_NESTING).map(_nested),
    st.integers(1, 40_000).map(lambda n: {"big": "y" * n, "list": list(range(min(n, 5_000)))}),
)

_INT_RANGES = {
    pb_descriptor.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    pb_descriptor.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    pb_descriptor.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    pb_descriptor.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _ints(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field.type]
    interesting = [0, 1, -1, 2, 3, 100, 1000, 1001, 10_000, low, high]
    return st.one_of(st.sampled_from([i for i in interesting if low <= i <= high]), st.integers(low, high))


def _scalar(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == pb_descriptor.FieldDescriptor.TYPE_STRING:
        return texts
    if kind == pb_descriptor.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == pb_descriptor.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == pb_descriptor.FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == pb_descriptor.FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    return _ints(field)


def _value(field: pb_descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return _scalar(field)


@st.composite
def messages(draw: st.DrawFn, descriptor: pb_descriptor.Descriptor, depth: int = 0) -> pb_message.Message:
    """A random message of ``descriptor``: any subset of fields, hostile strings, out-of-range numbers."""
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Struct":
        msg = struct_pb2.Struct()
        msg.update(draw(structs))
        return msg
    msg = cls()
    if depth > 3:
        return msg
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        target = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for key, value in draw(st.dictionaries(_scalar(key_field), _value(value_field, depth), max_size=3)).items():
                if value_field.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE:
                    target[key].CopyFrom(value)
                else:
                    target[key] = value
        elif field.is_repeated:
            values = draw(st.lists(_value(field, depth), max_size=4))
            if field.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE:
                for value in values:
                    target.add().CopyFrom(value)
            else:
                target.extend(values)
        elif field.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE:
            target.CopyFrom(draw(_value(field, depth)))
        else:
            setattr(msg, field.name, draw(_value(field, depth)))
    return msg


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _invalid_utf8_field(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


@st.composite
def raw_requests(draw: st.DrawFn, descriptor: pb_descriptor.Descriptor) -> bytes:
    """Request bytes that may not parse: random bytes, corrupted valid messages, invalid UTF-8 strings."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=256))
    valid = draw(messages(descriptor)).SerializeToString()
    if choice == 1 and valid:
        position = draw(st.integers(0, len(valid) - 1))
        return valid[:position] + bytes([draw(st.integers(0, 255))]) + valid[position + 1 :]
    if choice == 2:
        return valid[: draw(st.integers(0, len(valid)))] + draw(st.binary(max_size=8))
    strings = [f.number for f in descriptor.fields if f.type == pb_descriptor.FieldDescriptor.TYPE_STRING]
    number = draw(st.sampled_from(strings)) if strings else 1
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"ok\xfe\xfe"]))
    return valid + _invalid_utf8_field(number, bad)
