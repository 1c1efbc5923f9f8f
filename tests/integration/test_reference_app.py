"""End-to-end tests of the reference application (``examples/``), through its gateway.

The admin server, two customer-services instances and the gateway run as subprocesses on
loopback against a private embedded server (``reference_app``, tests/integration/
reference_app.py). Every request goes through the gateway with httpx, as a client's would.
The tests that stop a service or the database start it again before they end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.common.config import JwtKey
from examples.common.tokens import issue
from insightdb.runtime.devserver import stop_server
from tests.integration.reference_app import REPO, ReferenceApp, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = "alice@acme.example.com"  # admin of tenant acme
VERA = "vera@acme.example.com"  # viewer of tenant acme
BOB = "bob@globex.example.com"  # admin of tenant globex
OPS = "ops@example.com"  # platform admin
MAYA = "manager@example.com"  # platform support: the account manager


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def _create_client(app: ReferenceApp, name: str, **extra: Any) -> dict[str, Any]:
    with app.client() as http:
        answer = http.post(
            "/customer/clients", json={"name": name, **extra}, headers=app.auth(ALICE)
        )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def _me(app: ReferenceApp, headers: dict[str, str]) -> httpx.Response:
    with app.client() as http:
        return http.get("/admin/users/me", headers=headers)


# -- authentication -------------------------------------------------------------------------


def test_sign_in_issues_tokens_with_the_tenant_claim(reference_app: ReferenceApp) -> None:
    with reference_app.client() as http:
        answer = http.post(
            "/admin/auth/token", data={"username": ALICE, "password": reference_app.password}
        )
        assert answer.status_code == 200, answer.text
        pair = answer.json()
        assert pair["token_type"] == "bearer"
        assert pair["expires_in"] == reference_app.config.access_ttl_s
        me = http.get(
            "/admin/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
        )
        assert me.status_code == 200
        assert me.json()["email"] == ALICE
        assert me.json()["tenant_id"] == "acme"
        assert "password" not in me.text

        # A refresh token buys a new pair, and is no access token itself.
        refreshed = http.post("/admin/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        assert (
            _me(
                reference_app, {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
            ).status_code
            == 200
        )
        as_access = _me(reference_app, {"Authorization": f"Bearer {pair['refresh_token']}"})
        assert as_access.status_code == 401
        wrong_kind = http.post("/admin/auth/refresh", json={"refresh_token": pair["access_token"]})
        assert wrong_kind.status_code == 401


@pytest.mark.parametrize("who", [ALICE, "nobody@example.com"])
def test_a_wrong_password_and_an_unknown_account_get_the_same_401(
    reference_app: ReferenceApp, who: str
) -> None:
    with reference_app.client() as http:
        answer = http.post("/admin/auth/token", data={"username": who, "password": "not-it-at-all"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {
        "detail": {"error": "unauthorized", "message": "wrong e-mail or password"}
    }


def test_expired_tokens_are_refused_by_both_services(reference_app: ReferenceApp) -> None:
    alice = _me(reference_app, reference_app.auth(ALICE)).json()
    config = reference_app.config
    expired = issue(
        config,
        sub=alice["id"],
        role="admin",
        tenant="acme",
        now=time.time() - 2 * config.access_ttl_s,
    )
    headers = {"Authorization": f"Bearer {expired}"}
    with reference_app.client() as http:
        for path in ("/admin/users/me", "/customer/clients"):
            answer = http.get(path, headers=headers)
            assert answer.status_code == 401, path
            assert answer.json()["detail"]["message"] == "token expired"


def test_key_rotation_old_key_verifies_unknown_key_does_not(reference_app: ReferenceApp) -> None:
    alice = _me(reference_app, reference_app.auth(ALICE)).json()
    config = reference_app.config

    def signed_by(key: JwtKey) -> dict[str, str]:
        signer = replace(config, keys=(key,))
        return _bearer(issue(signer, sub=alice["id"], role="admin", tenant="acme"))

    # Signed before the rotation by the key now listed second: still valid.
    assert _me(reference_app, signed_by(reference_app.old_key)).status_code == 200
    # The old key's id with another secret: a forgery.
    forged = JwtKey(reference_app.old_key.kid, "x" * 40)
    assert _me(reference_app, signed_by(forged)).status_code == 401
    # A key dropped from the list: its tokens are no longer accepted.
    with reference_app.client() as http:
        answer = http.get("/customer/clients", headers=signed_by(JwtKey("gone", "y" * 40)))
    assert answer.status_code == 401
    assert answer.json()["detail"]["message"] == "token signed by an unknown key"


def test_requests_without_a_token_are_401_except_the_probes(reference_app: ReferenceApp) -> None:
    with reference_app.client() as http:
        for path in (
            "/customer/clients",
            "/customer/branding",
            "/admin/users/me",
            "/admin/billing",
        ):
            assert http.get(path).status_code == 401, path
        for path in ("/customer/health/live", "/admin/health/ready", "/customer/metrics"):
            assert http.get(path).status_code == 200, path


def test_role_checks(reference_app: ReferenceApp) -> None:
    with reference_app.client() as http:
        # A tenant's viewer reads but does not write.
        vera = reference_app.auth(VERA)
        assert http.get("/customer/clients", headers=vera).status_code == 200
        assert http.post("/customer/clients", json={"name": "x"}, headers=vera).status_code == 403
        # A tenant's admin is no platform admin.
        alice = reference_app.auth(ALICE)
        assert http.get("/admin/users", headers=alice).status_code == 403
        assert http.get("/admin/audit", headers=alice).status_code == 403
        # Platform support reads users but creates none.
        maya = reference_app.auth(MAYA)
        me = http.get("/admin/users/me", headers=maya).json()
        assert http.get(f"/admin/users/{me['id']}", headers=maya).status_code == 200
        body = {"email": "new@example.com", "password": "long-enough-1"}
        assert http.post("/admin/users", json=body, headers=maya).status_code == 403


def test_pagination_and_sorting(reference_app: ReferenceApp) -> None:
    prefix = _name("Paged")
    for letter in "cab":
        _create_client(reference_app, f"{prefix} {letter}")
    with reference_app.client() as http:
        pages = [
            http.get(
                "/customer/clients",
                params={"name_prefix": prefix, "sort": "-name", "per_page": 2, "page": page},
                headers=reference_app.auth(ALICE),
            ).json()
            for page in (1, 2)
        ]
    assert [p["total"] for p in pages] == [3, 3]
    names = [c["name"] for p in pages for c in p["items"]]
    assert names == [f"{prefix} {x}" for x in "cba"]


# -- tenant isolation across HTTP -----------------------------------------------------------


def test_tenant_b_gets_404_for_tenant_a_client_and_never_its_data(
    reference_app: ReferenceApp,
) -> None:
    secret_name = _name("Acme confidential")
    client = _create_client(reference_app, secret_name)
    assert client["tenant_id"] == "acme"
    bob = reference_app.auth(BOB)
    with reference_app.client() as http:
        answers = [
            http.get(f"/customer/clients/{client['id']}", headers=bob),
            http.patch(f"/customer/clients/{client['id']}", json={"name": "mine"}, headers=bob),
            http.delete(f"/customer/clients/{client['id']}", headers=bob),
        ]
        listed = http.get("/customer/clients", params={"per_page": 100}, headers=bob)
        still = http.get(f"/customer/clients/{client['id']}", headers=reference_app.auth(ALICE))
    for answer in answers:
        assert answer.status_code == 404
        assert answer.json() == {"detail": {"error": "not_found", "message": "no such client"}}
    assert listed.status_code == 200
    assert {c["tenant_id"] for c in listed.json()["items"]} == {"globex"}
    assert secret_name not in listed.text
    assert still.status_code == 200
    assert still.json()["name"] == secret_name  # untouched by Bob's PATCH and DELETE


def test_a_forged_tenant_header_is_403(reference_app: ReferenceApp) -> None:
    with reference_app.client() as http:
        forged = http.get(
            "/customer/clients", headers={**reference_app.auth(ALICE), "X-Tenant-ID": "globex"}
        )
        same = http.get(
            "/customer/clients", headers={**reference_app.auth(ALICE), "X-Tenant-ID": "acme"}
        )
        create = http.post(
            "/customer/clients",
            json={"name": "sneaky"},
            headers={**reference_app.auth(BOB), "X-Tenant-ID": "acme"},
        )
    assert forged.status_code == 403
    assert forged.json()["detail"]["error"] == "forbidden"
    assert "globex" not in forged.text.replace("X-Tenant-ID", "")
    assert same.status_code == 200
    assert create.status_code == 403


def test_staff_name_the_tenant_with_the_header_in_development_only(
    reference_app: ReferenceApp,
) -> None:
    ops = reference_app.auth(OPS)
    with reference_app.client() as http:
        without = http.get("/customer/clients", headers=ops)
        acme = http.get("/customer/clients", headers={**ops, "X-Tenant-ID": "acme"})
        bad = http.get("/customer/clients", headers={**ops, "X-Tenant-ID": "no such/tenant"})
    assert without.status_code == 401
    assert acme.status_code == 200
    assert {c["tenant_id"] for c in acme.json()["items"]} == {"acme"}
    assert bad.status_code == 400


# -- the cross-database reference and transaction -------------------------------------------


def test_account_manager_is_resolved_from_the_admin_database(reference_app: ReferenceApp) -> None:
    manager = _me(reference_app, reference_app.auth(MAYA)).json()
    alice_id = _me(reference_app, reference_app.auth(ALICE)).json()["id"]
    client = _create_client(reference_app, _name("Managed"))
    alice = reference_app.auth(ALICE)
    with reference_app.client() as http:
        body = {"title": _name("Project"), "client_id": client["id"]}
        created = http.post(
            "/customer/projects", json=body | {"account_manager_id": manager["id"]}, headers=alice
        )
        assert created.status_code == 201, created.text
        shown = http.get(f"/customer/projects/{created.json()['id']}", headers=alice)
        listed = http.get(
            "/customer/projects", params={"account_manager_id": manager["id"]}, headers=alice
        )
        # A tenant's user is no account manager; another tenant's client is unknown.
        not_staff = http.post(
            "/customer/projects", json=body | {"account_manager_id": alice_id}, headers=alice
        )
        other_client = http.post("/customer/projects", json=body, headers=reference_app.auth(BOB))
    assert shown.status_code == 200
    assert shown.json()["account_manager"] == {
        "id": manager["id"],
        "name": "Maya Manager",
        "email": MAYA,
    }
    assert created.json()["id"] in {p["id"] for p in listed.json()["items"]}
    assert all(p["account_manager"]["id"] == manager["id"] for p in listed.json()["items"])
    assert not_staff.status_code == 422
    assert other_client.status_code == 422


def test_client_and_billing_record_roll_back_together(reference_app: ReferenceApp) -> None:
    reference = f"E2E-{uuid.uuid4().hex[:10]}"
    first = _create_client(
        reference_app, _name("Billed"), billing={"reference": reference, "amount_cents": 900}
    )
    assert first["billing_reference"] == reference
    doomed = _name("Doomed")
    with reference_app.client() as http:
        # The client is written first (customer database), then the billing record (admin
        # database) fails on the unique reference: both are rolled back.
        clash = http.post(
            "/customer/clients",
            json={"name": doomed, "billing": {"reference": reference}},
            headers=reference_app.auth(ALICE),
        )
        clients = http.get(
            "/customer/clients", params={"name_prefix": doomed}, headers=reference_app.auth(ALICE)
        )
        billing = http.get(
            "/admin/billing",
            params={"tenant_id": "acme", "per_page": 100},
            headers=reference_app.auth(OPS),
        )
        audit = http.get(
            "/admin/audit",
            params={"model": "BillingRecord", "per_page": 100},
            headers=reference_app.auth(OPS),
        )
    assert clash.status_code == 409
    assert clash.json()["detail"]["error"] == "duplicate_key"
    assert clients.json()["total"] == 0
    records = [r for r in billing.json()["items"] if r["reference"] == reference]
    assert [r["client_id"] for r in records] == [first["id"]]
    # One audit record for the committed insert, none for the aborted one.
    alice_id = _me(reference_app, reference_app.auth(ALICE)).json()["id"]
    inserts = [
        e
        for e in audit.json()["items"]
        if e["operation"] == "insert" and e["document_id"] == records[0]["id"]
    ]
    assert [e["actor"] for e in inserts] == [f"user:{alice_id}"]


def test_white_label_settings_are_per_tenant(reference_app: ReferenceApp) -> None:
    with reference_app.client() as http:
        body = {"product_name": "Acme Hub", "primary_color": "#112233"}
        put = http.put("/customer/branding", json=body, headers=reference_app.auth(ALICE))
        acme = http.get("/customer/branding", headers=reference_app.auth(VERA))
        globex = http.get("/customer/branding", headers=reference_app.auth(BOB))
    assert put.status_code == 200, put.text
    assert acme.json()["product_name"] == "Acme Hub"
    assert acme.json()["customised"] is True
    assert globex.json()["product_name"] == "Globex Portal"


# -- the gateway ----------------------------------------------------------------------------


def test_request_ids_are_propagated_and_logged_by_all_three(reference_app: ReferenceApp) -> None:
    rid = f"e2e-{uuid.uuid4().hex}"
    headers = {**reference_app.auth(ALICE), "X-Request-ID": rid}
    with reference_app.client() as http:
        answers = [http.get(p, headers=headers) for p in ("/admin/users/me", "/customer/clients")]
        generated = http.get("/customer/health/live")
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-request-id"] for a in answers] == [rid, rid]
    assert len(generated.headers["x-request-id"]) == 32
    stack = reference_app.stack

    def logged_by_all() -> bool:
        return (
            rid in stack.gateway.log_text()
            and rid in stack.admin.log_text()
            and any(rid in c.log_text() for c in stack.customers)
        )

    wait_for(logged_by_all, "the request id in the gateway's, admin's and customer's logs")


def test_request_bodies_are_bounded(reference_app: ReferenceApp) -> None:
    with reference_app.client() as http:
        big = http.post(
            "/customer/clients",
            content=b'{"name": "' + b"x" * 70_000 + b'"}',
            headers={**reference_app.auth(ALICE), "Content-Type": "application/json"},
        )
    assert big.status_code == 413
    assert big.json()["detail"]["error"] == "body_too_large"


def _instance(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [i for i in report["upstreams"]["customer"]["instances"] if i["instance"] == name]
    assert len(found) == 1
    return found[0]


def test_breaker_opens_when_an_instance_stops_and_closes_when_it_returns(
    reference_app: ReferenceApp,
) -> None:
    stopped = reference_app.stack.customers[-1]
    alice = reference_app.auth(ALICE)
    served: list[str] = []
    statuses: list[int] = []
    with reference_app.client() as http:

        def get_clients() -> None:
            answer = http.get("/customer/clients", params={"per_page": 1}, headers=alice)
            statuses.append(answer.status_code)
            served.append(answer.headers.get("x-gateway-instance", ""))

        def breaker() -> dict[str, Any]:
            return _instance(http.get("/health/ready").json(), stopped.name)

        opened_before = breaker()["opened"]
        stopped.stop()
        try:

            def opened() -> bool:
                get_clients()
                return breaker()["opened"] > opened_before

            wait_for(opened, f"{stopped.name}'s breaker opens")
            assert set(statuses) == {200}  # every request was served, by the other instance
            assert stopped.name not in served
            report = http.get("/health/ready")
            assert report.status_code == 200
            assert report.json()["status"] == "degraded"
            assert _instance(report.json(), stopped.name)["ready"] is False
            assert _instance(report.json(), stopped.name)["breaker"] in ("open", "half_open")
        finally:
            stopped.start()
            stopped.wait_ready()

        def back() -> bool:
            get_clients()
            return served[-1] == stopped.name

        wait_for(back, f"{stopped.name} serves requests again")
        assert breaker()["breaker"] == "closed"
        assert set(statuses) == {200}
        assert http.get("/health/ready").json()["status"] == "ok"

    metrics = httpx.get(f"{reference_app.gateway}/metrics").text
    assert f'gateway_breaker_state{{instance="{stopped.name}"}} 0.0' in metrics


def test_readiness_is_503_while_the_database_is_stopped(reference_app: ReferenceApp) -> None:
    database = reference_app.database
    with reference_app.client() as http:
        database.stop()
        try:

            def all_down() -> bool:
                return all(
                    http.get(path).status_code == 503
                    for path in ("/admin/health/ready", "/customer/health/ready", "/health/ready")
                )

            wait_for(all_down, "every readiness probe answers 503")
            assert http.get("/customer/health/live").status_code == 200  # alive, not ready
            gateway = http.get("/health/ready").json()
            assert gateway["ready"] is False
            assert gateway["status"] == "down"
            answer = http.get("/customer/clients", headers=reference_app.auth(ALICE))
            assert answer.status_code == 503
            assert "retry-after" in answer.headers
        finally:
            database.start()
        wait_for(lambda: http.get("/health/ready").status_code == 200, "ready again")
        wait_for(
            lambda: (
                http.get("/customer/clients", headers=reference_app.auth(ALICE)).status_code == 200
            ),
            "requests served again",
        )


# -- make demo ------------------------------------------------------------------------------

_PROJECT_PARTS = ("models", "migrations", "seeds", "examples", "settings.toml")


def test_the_tour_runs_to_exit_0(tmp_path: Path) -> None:
    """``make demo``'s script, from a fresh copy of the project with no database running."""
    ignore = shutil.ignore_patterns("__pycache__", ".insightdb")
    for part in _PROJECT_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part, ignore=ignore)
        else:
            shutil.copy2(source, tmp_path / part)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EXAMPLE_", "GATEWAY_", "DATABASE_", "ENABLE_"))
        and not (k.startswith("INSIGHTDB_") and k != "INSIGHTDB_EMBEDDED_PYTHON")
    }
    try:
        done = subprocess.run(
            [sys.executable, "examples/tour.py"],
            cwd=tmp_path,
            env=env | {"PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        stop_server(tmp_path, timeout=2)  # a backstop: the tour stops what it started
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for expected in (
        "(pid ",
        "POST  /customer/clients",
        "404  [customer-",
        "403  [customer-",
        "account manager Maya Manager",
        "customer-2 open",
        "tour finished in",
    ):
        assert expected in out, out
    assert "eyJ" not in out + done.stderr  # no JWT printed
    assert "stopped (pid" in out  # the database the tour started, stopped again
