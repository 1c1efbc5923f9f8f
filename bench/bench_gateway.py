"""What the gateway costs: requests per second and latency through it versus straight to a service.

Starts, on free loopback ports, the embedded MongoDB-compatible server, one customer-services
instance, one admin server and the gateway (its only customer upstream being that one
instance), each as a subprocess stopped by its PID at the end. It then drives the same
bounded load — a fixed number of requests at a fixed concurrency, from one httpx client —
at ``GET /clients/{id}`` on the customer services directly and at
``GET /customer/clients/{id}`` through the gateway, alternating rounds so that drift on the
machine hits both alike, and prints requests per second and p50/p99 latency per target (the
median over rounds). ``--write`` also writes ``docs/benchmarks-gateway.md``.

    python -m bench.bench_gateway [--requests 1000] [--concurrency 1,16] [--rounds 3] [--write]

This is a benchmark, not a test: nothing asserts on its timings. Every process runs on this
machine, so the driver, the gateway, the service and the (single-threaded, Python)
emulator share its cores; read the gateway's *added* latency and the ratio, not the
absolute throughput, which a real MongoDB and more cores would change.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.report import describe_machine, package_versions
from insightdb.testing import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks-gateway.md"
TENANT = "bench-tenant"
STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process by its PID, then SIGKILL after a bound."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def uvicorn(app: str, port: int, env: Mapping[str, str], log: Path) -> Iterator[str]:
    """Run ``uvicorn app`` on 127.0.0.1:port; yield its base URL."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)


def wait_ready(url: str, process_log: Path) -> None:
    """Poll ``url/health/ready`` until 200, bounded by READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with suppress(httpx.TransportError):
            if httpx.get(f"{url}/health/ready", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    tail = process_log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT_S:.0f} s; its log ends:\n{tail}")


def service_env(uri: str, run_id: str) -> dict[str, str]:
    """The environment of the services: testing settings on the embedded server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTDB_")}
    env.update(
        {
            "INSIGHTDB_ENV": "testing",
            "INSIGHTDB_DATABASES__ADMIN__URI": uri,
            "INSIGHTDB_DATABASES__CUSTOMER__URI": uri,
            "INSIGHTDB_DATABASES__ADMIN__NAME": f"bench_gw_admin_{run_id}",
            "INSIGHTDB_DATABASES__CUSTOMER__NAME": f"bench_gw_customer_{run_id}",
            "INSIGHTDB_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def tenant_token() -> str:
    """An access token of a tenant's owner, signed with the development keys."""
    from examples.common.config import load_config
    from examples.common.tokens import issue

    previous = os.environ.pop("EXAMPLE_JWT_KEYS", None)
    try:
        config = load_config()  # INSIGHTDB_ENV=testing in our environment: the dev keys
    finally:
        if previous is not None:
            os.environ["EXAMPLE_JWT_KEYS"] = previous
    return issue(config, sub="bench-user", role="owner", tenant=TENANT)


@dataclass(frozen=True)
class Round:
    """One bounded burst against one target."""

    target: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def burst(client: httpx.AsyncClient, target: str, urls: list[str], concurrency: int) -> Round:
    """Send every URL once, ``concurrency`` at a time; time each request and the whole."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while True:
            try:
                url = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            response = await client.get(url)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Round(target, len(urls), time.perf_counter() - started, latencies, errors)


async def drive(
    targets: Mapping[str, str],
    token: str,
    *,
    requests: int,
    concurrency: list[int],
    rounds: int,
) -> dict[tuple[int, str], list[Round]]:
    """Create a few clients, warm up, then alternate timed rounds over the targets."""
    headers = {"Authorization": f"Bearer {token}"}
    most = max(concurrency)
    limits = httpx.Limits(max_connections=most, max_keepalive_connections=most)
    timeout = httpx.Timeout(30.0)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
        ids = []
        for n in range(20):
            response = await client.post(
                f"{targets['direct']}/clients", json={"name": f"bench client {n}"}
            )
            response.raise_for_status()
            ids.append(response.json()["id"])
        results: dict[tuple[int, str], list[Round]] = {}
        for name, base in targets.items():  # warm-up: connections, caches, code paths
            await burst(client, name, [f"{base}/clients/{i}" for i in ids * 10], most)
        for level in concurrency:
            for _ in range(rounds):
                for name, base in targets.items():
                    urls = [f"{base}/clients/{ids[n % len(ids)]}" for n in range(requests)]
                    round_ = await burst(client, name, urls, level)
                    results.setdefault((level, name), []).append(round_)
    return results


@dataclass(frozen=True)
class Summary:
    """The median over rounds of one target's figures."""

    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def summarise(rounds: list[Round]) -> Summary:
    return Summary(
        target=rounds[0].target,
        rps=statistics.median(r.rps for r in rounds),
        p50_ms=statistics.median(r.percentile(0.50) for r in rounds),
        p99_ms=statistics.median(r.percentile(0.99) for r in rounds),
        errors=sum(r.errors for r in rounds),
    )


LABELS = {
    "direct": "straight to customer services (`GET /clients/{id}`)",
    "gateway": "through the gateway (`GET /customer/clients/{id}`)",
}


def table(summaries: Mapping[tuple[int, str], Summary]) -> list[str]:
    lines = [
        "| concurrency | target | requests/s | p50 | p99 | non-200 |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for (level, name), s in summaries.items():
        lines.append(
            f"| {level} | {LABELS[name]} | {s.rps:,.0f} | {s.p50_ms:.1f} ms "
            f"| {s.p99_ms:.1f} ms | {s.errors} |"
        )
    lines.append("")
    for level in dict.fromkeys(level for level, _ in summaries):
        direct, gateway = summaries[(level, "direct")], summaries[(level, "gateway")]
        lines.append(
            f"- Concurrency {level}: through the gateway {gateway.rps / direct.rps:.2f}x the "
            f"throughput, p50 {gateway.p50_ms - direct.p50_ms:+.1f} ms, "
            f"p99 {gateway.p99_ms - direct.p99_ms:+.1f} ms."
        )
    return lines


def busy_note() -> list[str]:
    """A warning when other work loaded the machine during the run (load above the cores)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores:
        return []
    return [
        f"**This run shared the machine with other work**: its 1-minute load average was "
        f"{load:.1f} on {cores} cores at the end, so every figure above is slowed by "
        "processes outside the benchmark, by different amounts in different rounds. Rerun "
        "on an idle machine before comparing against this page.",
        "",
    ]


def render_page(
    summaries: Mapping[tuple[int, str], Summary],
    *,
    requests: int,
    concurrency: list[int],
    rounds: int,
) -> str:
    machine = describe_machine()
    versions = package_versions()
    for name in ("fastapi", "starlette", "uvicorn", "httpx"):
        with suppress(Exception):
            from importlib.metadata import version

            versions[name] = version(name)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks: the gateway's cost",
        "",
        f"Generated by `python -m bench.bench_gateway --write` on {when}. Do not edit this page "
        "by hand: rerun the script.",
        "",
        "What a request pays for going through the reference application's gateway "
        "(`examples/gateway`) instead of straight to a customer-services instance: the same "
        "authenticated read of one client by id, the same bounded load, one after the other "
        "in alternating rounds.",
        "",
        "## Result",
        "",
        *table(summaries),
        "",
        "## Method",
        "",
        f"- {requests:,} requests per round at a fixed concurrency (requests in flight: "
        f"{', '.join(map(str, concurrency))}) from one `httpx.AsyncClient` (keep-alive), "
        f"{rounds} rounds per target and concurrency, the targets alternating; a warm-up "
        "burst first. Figures are the median over rounds; p50 and p99 are per round over "
        "every request's latency. Concurrency 1 shows the hop's own latency; at 16, requests "
        "queue behind the single-threaded emulator and the service's event loop.",
        "- One process each, on free loopback ports, started as subprocesses and stopped by "
        "PID: the embedded MongoDB-compatible server (memory engine), one customer-services "
        "instance, the admin server and the gateway (uvicorn, one worker each, access log "
        "off, `INSIGHTDB_ENV=testing`). The gateway's customer upstream is that one instance, "
        "so the difference between the rows is the gateway's hop: parsing the request, "
        "choosing the instance through its breaker, adding the request id, forwarding with "
        "httpx and streaming the answer back.",
        "- **Read with care.** The driver, the gateway, the service and the emulator share "
        "this machine's cores, so the gateway's hop also takes CPU from the others; the "
        "emulator is single-threaded Python and slower than MongoDB. The absolute "
        "throughput says little about a deployment; the added latency per request is the "
        "figure that carries over.",
        "",
        *busy_note(),
        "## Machine and versions",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        "- packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument(
        "--concurrency",
        type=lambda raw: [int(n) for n in raw.split(",")],
        default=[1, 16],
        help="requests in flight, comma-separated levels (default 1,16)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target")
    parser.add_argument("--write", action="store_true", help=f"write {PAGE.relative_to(ROOT)}")
    args = parser.parse_args(argv)

    logs = ROOT / "bench" / "results" / "gateway"
    logs.mkdir(parents=True, exist_ok=True)
    run_id = f"{os.getpid()}_{int(time.time())}"
    with EmbeddedServer() as server:
        env = service_env(server.uri, run_id)
        os.environ["INSIGHTDB_ENV"] = "testing"
        subprocess.run(
            [str(Path(sys.executable).with_name("insightdb")), "migrate", "up"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        customer_port, admin_port, gateway_port = free_port(), free_port(), free_port()
        customer_log, admin_log, gateway_log = (
            logs / "customer.log",
            logs / "admin.log",
            logs / "gateway.log",
        )
        with (
            uvicorn(
                "examples.customer_services.app:app", customer_port, env, customer_log
            ) as customer,
            uvicorn("examples.admin_server.app:app", admin_port, env, admin_log) as admin,
        ):
            wait_ready(customer, customer_log)
            wait_ready(admin, admin_log)
            gateway_env = {**env, "GATEWAY_ADMIN_URLS": admin, "GATEWAY_CUSTOMER_URLS": customer}
            with uvicorn(
                "examples.gateway.app:app", gateway_port, gateway_env, gateway_log
            ) as gateway:
                wait_ready(gateway, gateway_log)
                targets = {"direct": customer, "gateway": f"{gateway}/customer"}
                results = asyncio.run(
                    drive(
                        targets,
                        tenant_token(),
                        requests=args.requests,
                        concurrency=args.concurrency,
                        rounds=args.rounds,
                    )
                )
    summaries = {name: summarise(rounds) for name, rounds in results.items()}
    print("\n".join(table(summaries)))
    print(f"({platform.python_implementation()} {platform.python_version()})")
    if args.write:
        PAGE.write_text(
            render_page(
                summaries,
                requests=args.requests,
                concurrency=args.concurrency,
                rounds=args.rounds,
            ),
            encoding="utf-8",
        )
        print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
