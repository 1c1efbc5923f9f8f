"""Start and stop the reference application's services as subprocesses on loopback.

Used by ``make demo`` (:mod:`examples.tour`), ``make serve`` (:mod:`examples.serve`) and the
end-to-end tests. Each service is ``uvicorn <module>:app`` on ``127.0.0.1`` with its output
in a log file; it is waited for until its ``/health/ready`` answers 200 and stopped by its
own PID (SIGTERM, then SIGKILL after a bound). :func:`prepare_database` runs
``insightdb migrate up`` and ``insightdb seed run`` with the same environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

__all__ = [
    "ADMIN",
    "CUSTOMER",
    "GATEWAY",
    "Service",
    "ServiceError",
    "Stack",
    "free_port",
    "child_env",
    "insightdb_cli",
    "prepare_database",
]

ADMIN = "examples.admin_server.app:app"
CUSTOMER = "examples.customer_services.app:app"
GATEWAY = "examples.gateway.app:app"
HOST = "127.0.0.1"
READY_BOUND_S = 60.0  # a bound against hanging, not an expectation
STOP_BOUND_S = 10.0


class ServiceError(RuntimeError):
    """A service did not start, or a command failed; the message ends with its log tail."""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def insightdb_cli(
    *args: str, cwd: Path, env: Mapping[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``insightdb <args>`` with this interpreter; raise :class:`ServiceError` on failure."""
    done = subprocess.run(
        [sys.executable, "-m", "insightdb.cli", *args],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ServiceError(f"insightdb {' '.join(args)} failed:\n" + "\n".join(tail))
    return done


def prepare_database(cwd: Path, env: Mapping[str, str]) -> list[str]:
    """Apply pending migrations to both databases, then run the seeders; return the
    commands' report lines."""
    lines: list[str] = []
    for args in (("migrate", "up"), ("seed", "run")):
        done = insightdb_cli(*args, cwd=cwd, env=env)
        lines.extend(line.strip() for line in done.stdout.splitlines() if line.strip())
    return lines


@dataclass(eq=False)
class Service:
    """One uvicorn process serving ``target`` on ``127.0.0.1:port``.

    Attributes:
        name: A short name for transcripts and logs (``admin``, ``customer-1``...).
        target: The ASGI application, ``module:attribute``.
        port: The loopback port.
        env: The process's environment.
        cwd: Its working directory (where ``settings.toml`` is read).
        log: The file its output goes to.
    """

    name: str
    target: str
    port: int
    env: Mapping[str, str]
    cwd: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """Its process id (0 when not started)."""
        return self.proc.pid if self.proc is not None else 0

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        command = [sys.executable, "-m", "uvicorn", self.target, "--host", HOST]
        command += ["--port", str(self.port), "--no-access-log"]
        command += ["--timeout-graceful-shutdown", "5"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=self.cwd,
                env={**self.env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, bound_s: float = READY_BOUND_S) -> None:
        """Wait until ``/health/ready`` answers 200.

        Raises:
            ServiceError: The process exited, or the bound passed.
        """
        deadline = time.monotonic() + bound_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self.running:
                    raise ServiceError(f"{self.name} exited:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/health/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    raise ServiceError(f"{self.name} not ready in {bound_s:g} s:\n{tail}")
                time.sleep(0.1)

    def stop(self, bound_s: float = STOP_BOUND_S) -> int | None:
        """Stop the process by its PID: SIGTERM, then SIGKILL after ``bound_s``; return its
        exit status (``None`` when it was not started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=bound_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=bound_s)
        return proc.returncode

    def log_text(self) -> str:
        """Everything it wrote so far."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """Its last ``lines`` lines of output."""
        return "\n".join(self.log_text().splitlines()[-lines:])


class Stack:
    """The admin server, ``customers`` customer-services instances and the gateway.

    A context manager: entering starts them all at once (the gateway pointed at the
    others) and waits until each is ready; leaving stops them all.

    Args:
        cwd: The project directory (``settings.toml``, ``models/``, ``examples/``).
        env: The environment of every process (insightdb's and the application's
            variables); the gateway also gets ``GATEWAY_ADMIN_URLS`` and
            ``GATEWAY_CUSTOMER_URLS``.
        log_dir: Where each service's log file goes.
        customers: How many customer-services instances.
        gateway_port: The gateway's port; ``0`` picks a free one (so do the services,
            unless ``service_ports`` gives theirs: admin first, then the customers).
    """

    def __init__(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_dir: Path,
        customers: int = 2,
        gateway_port: int = 0,
        service_ports: tuple[int, ...] = (),
    ) -> None:
        ports = list(service_ports) or [free_port() for _ in range(customers + 1)]
        if len(ports) != customers + 1:
            raise ValueError("service_ports needs one port for admin and one per customer")
        log_dir.mkdir(parents=True, exist_ok=True)

        def service(name: str, target: str, port: int, extra: Mapping[str, str]) -> Service:
            return Service(name, target, port, {**env, **extra}, cwd, log_dir / f"{name}.log")

        self.admin = service("admin", ADMIN, ports[0], {})
        self.customers = [
            service(f"customer-{i}", CUSTOMER, port, {}) for i, port in enumerate(ports[1:], 1)
        ]
        upstreams = {
            "GATEWAY_ADMIN_URLS": self.admin.url,
            "GATEWAY_CUSTOMER_URLS": ",".join(c.url for c in self.customers),
        }
        self.gateway = service("gateway", GATEWAY, gateway_port or free_port(), upstreams)

    @property
    def services(self) -> list[Service]:
        """Every service, the gateway last."""
        return [self.admin, *self.customers, self.gateway]

    def start(self) -> None:
        """Start everything and wait until each answers ready (stopping all on failure)."""
        try:
            # All at once: the gateway needs no upstream to start, only to be ready.
            for service in self.services:
                service.start()
            for service in self.services:
                service.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything that runs, the gateway first, each by its own PID."""
        for service in reversed(self.services):
            service.stop()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``extra`` (for the services and the CLI)."""
    return {**os.environ, **(extra or {})}
