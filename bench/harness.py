"""Server processes for the benchmark: the service (``python -m pattern_service serve``) and the echo server.

Both run as subprocesses on free loopback ports; the benchmark's load generator is a third process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMWS_")}
    paths = [str(ROOT), str(ROOT / "clients" / "python" / "src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env


async def wait_serving(address: str, wait_seconds: float) -> None:
    """Wait until ``address`` answers the overall health check with SERVING.

    Raises:
        TimeoutError: Not serving within ``wait_seconds`` seconds.
    """
    deadline = time.monotonic() + wait_seconds
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} not serving after {wait_seconds:.0f} s")
            await asyncio.sleep(0.2)


class ServiceProcess:
    """The Pattern Service as a subprocess on a free loopback port.

    Args:
        data_dir: ``TMWS_DATA_DIR``.
        metrics: Serve Prometheus metrics (on a free port) or not (``TMWS_METRICS_ADDRESS`` empty).
        log_level: ``TMWS_LOG_LEVEL``.
        env: Further ``TMWS_*`` settings.
        log_file: Where the server's output goes.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        metrics: bool = True,
        log_level: str = "INFO",
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
    ):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.metrics_address = f"127.0.0.1:{free_port()}" if metrics else ""
        self._env = _env(
            {
                "TMWS_GRPC_ADDRESS": self.address,
                "TMWS_DATA_DIR": str(data_dir),
                "TMWS_METRICS_ADDRESS": self.metrics_address,
                "TMWS_LOG_LEVEL": log_level,
                "TMWS_GRACE_PERIOD": "2",
                **(env or {}),
            }
        )
        self._log_file = log_file or Path(tempfile.mkstemp(prefix="bench-service-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self) -> None:
        with self._log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pattern_service", "serve"],
                cwd=ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self, wait_seconds: float = 300.0) -> ServiceProcess:
        """Start and wait until it serves (start-up includes migrations and index reconciliation)."""
        started = time.perf_counter()
        self._spawn()
        try:
            await wait_serving(self.address, wait_seconds)
        except BaseException:
            self.stop()
            raise RuntimeError(f"service did not start; log: {self._log_file}") from None
        self.start_seconds = time.perf_counter() - started
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait (graceful shutdown), then kill if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class EchoProcess:
    """The bare echo server (:mod:`bench.echo`) as a subprocess.

    Args:
        responses: ``{(method, scenario): serialized response}`` it answers with.
        workdir: Where its response and port files go.
    """

    def __init__(self, responses: Mapping[tuple[str, str], bytes], workdir: Path):
        self._responses_file = workdir / "echo-responses.pickle"
        self._responses_file.write_bytes(pickle.dumps(dict(responses)))
        self._port_file = workdir / "echo.port"
        self._port_file.unlink(missing_ok=True)
        self.address = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.echo",
                "--address",
                "127.0.0.1:0",
                "--responses",
                str(self._responses_file),
                "--port-file",
                str(self._port_file),
            ],
            cwd=ROOT,
            env=_env({}),
        )

    async def start(self, wait_seconds: float = 60.0) -> EchoProcess:
        """Start and wait for its port."""
        self._spawn()
        assert self.proc is not None
        deadline = time.monotonic() + wait_seconds
        while not self._port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("echo server did not start")
            await asyncio.sleep(0.1)
        self.address = f"127.0.0.1:{int(self._port_file.read_text())}"
        return self

    @property
    def pid(self) -> int:
        """The echo server's process id."""
        return self.proc.pid if self.proc is not None else 0

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
