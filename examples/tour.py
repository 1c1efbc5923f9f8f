"""``make demo``: the reference application, started and toured through its gateway.

From the repository root, with nothing installed but the virtual environment::

    python examples/tour.py

It starts (or reuses) the project's shared development database, applies the migrations,
runs the seeders, starts the admin server, two customer-services instances and the
gateway on free loopback ports, and then, through the gateway only, with httpx: signs in
as a tenant's user, creates a client with its billing record in one transaction over both
databases (and shows a failing one roll back), shows that another tenant can't see it and
that a forged ``X-Tenant-ID`` is refused, resolves a project's account manager across the
databases, reads the audit trail, health and metrics, stops one customer-services
instance and shows the gateway routing around it. It prints a transcript of each request,
stops every process it started by its PID and exits 0 — or prints what failed, with the
services' log tails, and exits 1.

Tokens and passwords are never printed: the demo accounts get a random password for this
run (``EXAMPLE_DEMO_PASSWORD``, see ``seeds/demo_accounts.py``) and the JWTs a random key.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from examples.launcher import ServiceError, Stack, child_env, insightdb_cli, prepare_database

ROOT = Path(__file__).resolve().parents[1]


class TourError(RuntimeError):
    """A step of the tour did not get the answer it shows."""


class Transcript:
    """Prints the tour as it happens: sections, requests and what they answered."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def section(self, title: str) -> None:
        """Start a numbered part of the tour."""
        print(f"\n{title}")

    def line(self, text: str) -> None:
        """Print one indented line."""
        print(f"  {text}", flush=True)

    def request(self, response: httpx.Response, note: str = "") -> None:
        """Print one request and its answer, e.g. ``GET /x  200  (customer-1) ...``."""
        request = response.request
        target = request.url.raw_path.decode()
        served = response.headers.get("x-gateway-instance", "gateway")
        print(
            f"  {request.method:<5} {target:<46} {response.status_code}  [{served}] {note}",
            flush=True,
        )


def expect(response: httpx.Response, status: int) -> Any:
    """Return the JSON answer, or raise :class:`TourError` when the status differs."""
    if response.status_code != status:
        raise TourError(
            f"{response.request.method} {response.request.url.path}: expected {status}, "
            f"got {response.status_code}: {response.text[:300]}"
        )
    if not response.content or "json" not in response.headers.get("content-type", ""):
        return None
    return response.json()


class Tour:
    """The scripted requests, through the gateway at ``base_url``."""

    def __init__(self, http: httpx.Client, stack: Stack, password: str, out: Transcript):
        self.http = http
        self.stack = stack
        self.password = password
        self.out = out
        self.run_id = secrets.token_hex(3)

    def sign_in(self, email: str) -> dict[str, str]:
        """Sign in through the gateway; return the ``Authorization`` header (not shown)."""
        response = self.http.post(
            "/admin/auth/token", data={"username": email, "password": self.password}
        )
        pair = expect(response, 200)
        me = expect(
            self.http.get(
                "/admin/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
            ),
            200,
        )
        tenant = f"tenant {me['tenant_id']}" if me["tenant_id"] else "platform staff"
        self.out.request(
            response,
            f"{email}: {me['role']}, {tenant}; access token valid {pair['expires_in']} s",
        )
        return {"Authorization": f"Bearer {pair['access_token']}"}

    def run(self) -> None:
        """Every step, in order."""
        out, http = self.out, self.http
        out.section("1. Alice, an admin of tenant acme, signs in (OAuth2 password flow, JWT)")
        alice = self.sign_in("alice@acme.example.com")

        out.section(
            "2. She creates a client and its billing record: two databases, one transaction"
        )
        reference = f"TOUR-{self.run_id}"
        body = {
            "name": f"Tour client {self.run_id}",
            "billing": {"reference": reference, "plan": "growth", "amount_cents": 49_00},
        }
        response = http.post("/customer/clients", json=body, headers=alice)
        client = expect(response, 201)
        out.request(
            response, f"{client['name']!r} in tenant {client['tenant_id']}, billing {reference}"
        )
        clash = {"name": f"Clashing client {self.run_id}", "billing": {"reference": reference}}
        response = http.post("/customer/clients", json=clash, headers=alice)
        expect(response, 409)
        out.request(response, "the billing reference is taken: the transaction rolls back")
        response = http.get(
            "/customer/clients", params={"name_prefix": "Clashing client"}, headers=alice
        )
        found = expect(response, 200)
        if any(c["name"] == clash["name"] for c in found["items"]):
            raise TourError("the rolled-back client exists")
        out.request(response, f"no {clash['name']!r}: the customer write was rolled back too")

        out.section("3. Bob, of tenant globex, can't see it")
        bob = self.sign_in("bob@globex.example.com")
        response = http.get(f"/customer/clients/{client['id']}", headers=bob)
        expect(response, 404)
        out.request(response, "not found: another tenant's client does not exist for globex")
        response = http.get("/customer/clients", headers=bob)
        page = expect(response, 200)
        names = ", ".join(c["name"] for c in page["items"])
        out.request(response, f"globex's clients: {names}")
        response = http.get("/customer/clients", headers={**alice, "X-Tenant-ID": "globex"})
        expect(response, 403)
        out.request(response, "Alice's token with a forged X-Tenant-ID: globex is refused")

        out.section("4. A project's account manager lives in the other database")
        maya = self.sign_in("manager@example.com")
        manager = expect(http.get("/admin/users/me", headers=maya), 200)
        project = {
            "title": f"Onboarding {self.run_id}",
            "client_id": client["id"],
            "budget_cents": 12_000_00,
            "account_manager_id": manager["id"],
        }
        created = expect(http.post("/customer/projects", json=project, headers=alice), 201)
        response = http.get(f"/customer/projects/{created['id']}", headers=alice)
        shown = expect(response, 200)
        am = shown["account_manager"]
        out.request(response, f"{shown['title']!r}: account manager {am['name']} <{am['email']}>")

        out.section("5. The platform's admin reads billing and the audit trail")
        olga = self.sign_in("ops@example.com")
        response = http.get("/admin/billing", params={"tenant_id": "acme"}, headers=olga)
        billing = expect(response, 200)
        out.request(response, f"{billing['total']} billing record(s) of acme")
        response = http.get(
            "/admin/audit", params={"model": "BillingRecord", "per_page": 1}, headers=olga
        )
        entry = expect(response, 200)["items"][0]
        out.request(response, f"last: {entry['operation']} {entry['model']} by {entry['actor']}")

        out.section("6. Health and metrics")
        self.health("every instance ready")
        for service in ("admin", "customer"):
            response = http.get(f"/{service}/metrics")
            expect(response, 200)
            families = {
                line.split()[2] for line in response.text.splitlines() if line.startswith("# TYPE ")
            }
            out.request(response, f"{len(families)} metric families, e.g. insightdb_commands")
        response = http.get("/metrics")
        expect(response, 200)
        out.request(response, "the gateway's own: requests per upstream, breaker per instance")

        out.section("7. customer-2 stops; the gateway routes around it")
        stopped = self.stack.customers[-1]
        stopped.stop()
        out.line(f"stopped {stopped.name} (pid {stopped.pid})")
        served: list[str] = []
        for _ in range(6):
            response = http.get("/customer/clients", params={"per_page": 1}, headers=alice)
            expect(response, 200)
            served.append(response.headers.get("x-gateway-instance", "?"))
        out.line(f"6 x GET /customer/clients: all 200, served by {', '.join(served)}")
        if stopped.name in served:
            raise TourError(f"{stopped.name} served a request after it stopped")
        self.health(f"{stopped.name} is skipped")

    def health(self, note: str) -> None:
        """Show the gateway's aggregated readiness."""
        response = self.http.get("/health/ready")
        report = expect(response, 200)
        parts = []
        for name, upstream in report["upstreams"].items():
            breakers = ", ".join(f"{i['instance']} {i['breaker']}" for i in upstream["instances"])
            parts.append(f"{name} {upstream['ready']}/{len(upstream['instances'])} ({breakers})")
        self.out.request(response, f"{report['status']}: {'; '.join(parts)} — {note}")


_STARTED = re.compile(r"\(pid (\d+), (started|reused)")


@contextmanager
def shared_database(out: Transcript, env: dict[str, str]) -> Iterator[None]:
    """Start the shared development server, or find it running; stop it afterwards only
    if this tour started it."""
    line = insightdb_cli("server", "start", cwd=ROOT, env=env).stdout.strip()
    found = _STARTED.search(line)
    if found is None:
        raise ServiceError(f"unexpected answer of insightdb server start: {line}")
    out.line(f"database   {line.removeprefix('the ')}")
    try:
        yield
    finally:
        if found.group(2) == "started":
            insightdb_cli("server", "stop", cwd=ROOT, env=env)
            out.line(f"database   stopped (pid {found.group(1)})")


def main() -> int:
    """Run the tour; return the exit status."""
    out = Transcript()
    password = secrets.token_urlsafe(18)
    keys = [{"kid": f"tour-{secrets.token_hex(4)}", "secret": secrets.token_urlsafe(32)}]
    env = child_env(
        {
            "EXAMPLE_DEMO_PASSWORD": password,
            "EXAMPLE_JWT_KEYS": json.dumps(keys),
            # Long enough that the stopped instance's breaker still shows open at the end.
            "GATEWAY_BREAKER_RESET_S": "30",
        }
    )
    logs = Path(tempfile.mkdtemp(prefix="insightdb-tour-"))
    print("insightdb reference application: a scripted tour through the gateway")
    stack: Stack | None = None
    try:
        with shared_database(out, env):
            for line in prepare_database(ROOT, env):
                if line.startswith(("admin:", "customer:")) or ": done" in line:
                    out.line(f"prepare    {line.rstrip(':')}")
            stack = Stack(cwd=ROOT, env=env, log_dir=logs, customers=2)
            with stack:
                for service in stack.services:
                    out.line(f"service    {service.name:<10} {service.url}  pid {service.pid}")
                with httpx.Client(base_url=stack.gateway.url, timeout=15.0) as http:
                    Tour(http, stack, password, out).run()
                out.section("Shutting down")
            for service in stack.services:
                out.line(f"stopped    {service.name:<10} pid {service.pid}")
    except (TourError, ServiceError, httpx.HTTPError) as exc:
        print(f"\ntour failed: {exc}", file=sys.stderr)
        for service in stack.services if stack else ():
            print(f"\n--- {service.name} (last lines) ---\n{service.log_tail()}", file=sys.stderr)
        print(f"\nlogs kept in {logs}", file=sys.stderr)
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    print(f"\ntour finished in {time.monotonic() - out.started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
