"""The deployment files point at what the code really serves.

No Docker engine or Kubernetes cluster runs here, so the image is never built and the
manifests are never applied in CI. Instead this module reads ``deploy/`` and checks it
against the code: every probe and health-check path is a GET route of the app the container
runs, on the port uvicorn listens on; Services, the PodDisruptionBudgets and the autoscaler
select what exists; the gateway's upstream URLs name real Services; the ConfigMap's
``settings.toml`` and the Secret template load as production settings; the Dockerfile copies
files that exist and that its ``.dockerignore`` lets in; and the extras it installs provide
every third-party module the services import. Schema validation of the manifests
(``kubernetes-validate``), of the compose file (``check-jsonschema``) and the Dockerfile lint
(``hadolint``) run in ``make lint``.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import json
import re
import sys
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from starlette.routing import Match

import insightdb
from examples.common.config import parse_keys

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
# The three services of the reference application; the image runs each of them.
APPS = {
    "admin-server": "examples.admin_server.app:app",
    "customer-services": "examples.customer_services.app:app",
    "gateway": "examples.gateway.app:app",
}
KINDS = {
    "Namespace",
    "ConfigMap",
    "Secret",
    "Job",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(_documents(path))
    return docs


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _manifests() if doc["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


# --- what an app serves ------------------------------------------------------------------


def _app_spec(command: list[str]) -> str | None:
    """Return ``module:attr`` when ``command`` runs uvicorn, else None."""
    if not command or Path(command[0]).name != "uvicorn":
        return None
    specs = [arg for arg in command[1:] if re.fullmatch(r"[\w.]+:\w+", arg)]
    assert len(specs) == 1, f"uvicorn command without exactly one app: {command}"
    return specs[0]


def _listen_port(command: list[str]) -> int:
    assert "--port" in command, f"uvicorn listens on its default port, say it: {command}"
    return int(command[command.index("--port") + 1])


def _load_app(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _first_get_match(app: Any, path: str) -> int | None:
    """Index of the route of ``app`` that serves ``GET path``, as the router picks it."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    for index, route in enumerate(app.router.routes):
        match, _child = route.matches(dict(scope))
        if match is Match.FULL:
            return index
    return None


def _serves(spec: str, path: str) -> bool:
    """Whether the app has a GET route for exactly ``path``.

    Routes are matched through Starlette's public ``Route.matches``, so included routers
    and mounts count. A catch-all (the gateway's proxy) matches anything: a path counts only
    when a nonsense path beside it is not served by the same route.
    """
    app = _load_app(spec)
    index = _first_get_match(app, path)
    if index is None:
        return False
    return _first_get_match(app, f"{path.rstrip('/')}/no-such-route-{uuid.uuid4().hex}") != index


@dataclass(frozen=True)
class Check:
    """A path a probe or health check requests, and the port it requests it on."""

    where: str
    spec: str
    path: str
    port: int
    listen_port: int


def _container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert isinstance(number, int)
    return number


def _k8s_checks() -> Iterator[Check]:
    for deployment in _of_kind("Deployment"):
        template = deployment["spec"]["template"]
        annotations = template["metadata"].get("annotations", {})
        for container in template["spec"]["containers"]:
            spec = _app_spec(container["command"])
            assert spec is not None, f"{deployment['metadata']['name']}: not a uvicorn app"
            where = f"{deployment['metadata']['name']}/{container['name']}"
            listen = _listen_port(container["command"])
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(probe_name)
                assert probe is not None, f"{where}: no {probe_name}"
                get = probe["httpGet"]
                port = _container_port(container, get["port"])
                yield Check(f"{where} {probe_name}", spec, get["path"], port, listen)
            if annotations.get("prometheus.io/scrape") == "true":
                port = int(annotations["prometheus.io/port"])
                yield Check(
                    f"{where} scrape", spec, annotations["prometheus.io/path"], port, listen
                )


def _compose_checks() -> Iterator[Check]:
    for name, service in _compose()["services"].items():
        spec = _app_spec(service.get("command") or [])
        if spec is None:
            continue
        test = " ".join(service["healthcheck"]["test"])
        (url,) = re.findall(r"https?://[^'\" ]+", test)
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1", f"{name}: the health check must ask the container"
        listen = _listen_port(service["command"])
        yield Check(f"compose {name} healthcheck", spec, parts.path, parts.port or 80, listen)


CHECKS = [*_k8s_checks(), *_compose_checks()]


def test_every_service_is_deployed_and_probed() -> None:
    """Each of the three apps runs in Kubernetes and in compose, with probes."""
    assert {c.spec for c in CHECKS if not c.where.startswith("compose")} == set(APPS.values())
    assert {c.spec for c in CHECKS if c.where.startswith("compose")} == set(APPS.values())
    for spec in APPS.values():
        probed = {c.path for c in CHECKS if c.spec == spec}
        assert {"/health/live", "/health/ready"} <= probed, spec


@pytest.mark.parametrize("check", CHECKS, ids=[c.where for c in CHECKS])
def test_probe_is_a_real_route_on_the_listening_port(check: Check) -> None:
    assert _serves(check.spec, check.path), (
        f"{check.where}: {check.path} is not a GET route of {check.spec}"
    )
    assert check.port == check.listen_port, (
        f"{check.where}: probes port {check.port}, uvicorn listens on {check.listen_port}"
    )


def test_services_metrics_routes_are_scraped() -> None:
    """The two database services expose /metrics and their pods say so."""
    for name in ("admin-server", "customer-services"):
        assert _serves(APPS[name], "/metrics")
        annotations = _named("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"


# --- the manifests hang together ---------------------------------------------------------


def test_manifests_parse_and_are_listed() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # The Secret is a template filled in out of band; everything else is applied by -k.
    assert set(kustomization["resources"]) == files - {"secret.template.yaml"}
    for doc in _manifests():
        assert doc["kind"] in KINDS, doc["kind"]
        assert doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization["namespace"]


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_deployments_select_their_own_pods_and_limit_resources() -> None:
    for deployment in _of_kind("Deployment"):
        labels = _pod_labels(deployment)
        assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys()
            assert {"cpu", "memory"} <= resources["limits"].keys()
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_services_pdbs_and_autoscaler_target_real_pods() -> None:
    deployments = {d["metadata"]["name"]: d for d in _of_kind("Deployment")}
    for service in _of_kind("Service"):
        (deployment,) = [
            d for d in deployments.values() if _selects(service["spec"]["selector"], _pod_labels(d))
        ]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for port in service["spec"]["ports"]:
            target = _container_port(container, port["targetPort"])
            assert target == _listen_port(container["command"]), service["metadata"]["name"]
    pdbs = _of_kind("PodDisruptionBudget")
    assert {p["metadata"]["name"] for p in pdbs} == set(deployments)
    for pdb in pdbs:
        deployment = deployments[pdb["metadata"]["name"]]
        assert _selects(pdb["spec"]["selector"]["matchLabels"], _pod_labels(deployment))
        replicas = deployment["spec"].get("replicas")
        assert replicas is None or pdb["spec"]["minAvailable"] < replicas
    (hpa,) = _of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "customer-services")
    # The autoscaler owns the replica count; an apply must not reset it.
    assert "replicas" not in deployments["customer-services"]["spec"]
    assert (
        hpa["spec"]["minReplicas"]
        > _named("PodDisruptionBudget", "customer-services")["spec"]["minAvailable"]
    )


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_gateway_upstreams_are_services_on_their_ports() -> None:
    services = {s["metadata"]["name"]: s for s in _of_kind("Service")}
    (gateway,) = _named("Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    env = _env(gateway)
    for variable, upstream in (
        ("GATEWAY_ADMIN_URLS", "admin-server"),
        ("GATEWAY_CUSTOMER_URLS", "customer-services"),
    ):
        for url in env[variable].split(","):
            parts = urlsplit(url)
            assert parts.hostname == upstream
            assert parts.port in {p["port"] for p in services[upstream]["spec"]["ports"]}


def test_database_pods_wait_for_the_migration_job() -> None:
    job = _named("Job", "insightdb-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"][:3] == ["insightdb", "migrate", "up"]
    assert "--wait" in migrate["command"]
    for name in ("admin-server", "customer-services"):
        pod = _named("Deployment", name)["spec"]["template"]["spec"]
        (gate,) = pod["initContainers"]
        assert "insightdb migrate check" in " ".join(gate["command"])
        assert gate["image"] == migrate["image"] == pod["containers"][0]["image"]


def _secret_files() -> dict[str, str]:
    data = _named("Secret", "insightdb-secrets")["stringData"]
    assert isinstance(data, dict)
    return data


def test_mounted_files_come_from_the_configmap_and_secret() -> None:
    volumes_from = {"configMap": "insightdb-settings", "secret": "insightdb-secrets"}
    keys = {
        "insightdb-settings": set(_named("ConfigMap", "insightdb-settings")["data"]),
        "insightdb-secrets": set(_secret_files()),
    }
    pods = [d["spec"]["template"]["spec"] for d in [*_of_kind("Deployment"), *_of_kind("Job")]]
    for pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for mount in container.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                for source, name_key in (("configMap", "name"), ("secret", "secretName")):
                    if source in volume:
                        assert volume[source][name_key] == volumes_from[source]
                        if "subPath" in mount:
                            assert mount["subPath"] in keys[volumes_from[source]]
            jwt_path = _env(container).get("EXAMPLE_JWT_KEYS")
            if jwt_path is not None:
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert str(Path(jwt_path).parent) in mounts


def test_configmap_and_secret_template_load_as_production_settings(tmp_path: Path) -> None:
    settings_toml = tmp_path / "settings.toml"
    settings_toml.write_text(_named("ConfigMap", "insightdb-settings")["data"]["settings.toml"])
    secrets_toml = tmp_path / ".secrets.toml"
    secrets_toml.write_text(_secret_files()[".secrets.toml"])
    settings = insightdb.get_settings("production", settings_files=[settings_toml, secrets_toml])
    assert settings.databases.admin.uri
    assert settings.databases.customer.uri
    assert settings.driver.w == "majority"
    assert "CHANGE_ME" not in repr(settings)  # the template's passwords are masked
    # The services' own parser (EXAMPLE_JWT_KEYS) accepts the template's key list.
    assert parse_keys(_secret_files()["jwt-keys.json"])


# --- compose -----------------------------------------------------------------------------


def test_compose_runs_a_replica_set_migrations_then_the_services() -> None:
    compose = _compose()
    services = compose["services"]
    members = [f"mongo{i}" for i in (1, 2, 3)]
    for member in members:
        assert "--replSet" in services[member]["command"]
        assert services[member]["healthcheck"]["test"]
        assert re.fullmatch(r"mongo:\d+\.\d+\.\d+", services[member]["image"])
    init = services["mongo-init"]
    assert {m: {"condition": "service_healthy"} for m in members} == init["depends_on"]
    script = init["volumes"][0].split(":")[0]
    assert "rs.initiate" in (DEPLOY / script).read_text(encoding="utf-8")
    assert services["migrate"]["command"][:3] == ["insightdb", "migrate", "up"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for secret in service.get("secrets", []):
            path = DEPLOY / compose["secrets"][secret]["file"]
            assert parse_keys(str(path))  # EXAMPLE_JWT_KEYS names this file
    for spec_name in ("admin-server", "customer-services-1", "customer-services-2"):
        assert services[spec_name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    uri = services["migrate"]["environment"]["INSIGHTDB_DATABASES__ADMIN__URI"]
    assert "replicaSet=rs0" in uri
    for url in services["gateway"]["environment"]["GATEWAY_CUSTOMER_URLS"].split(","):
        host = urlsplit(url).hostname
        assert host in services
        assert _app_spec(services[host]["command"]) == APPS["customer-services"]


# --- the image ---------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _dockerignored(relative: str) -> bool:
    """Whether deploy/Dockerfile.dockerignore excludes a path (last matching rule wins)."""
    excluded = False
    for raw in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.removeprefix("!").rstrip("/").removeprefix("**/")
        candidates = [relative, *Path(relative).parts]
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerfile_copies_what_exists_and_runs_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage"
    assert all(
        re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", b) for b in bases
    )
    for keyword, rest in instructions:
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _target = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not _dockerignored(source.rstrip("/")), f"{source} is .dockerignored"
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users
    assert not users[-1].startswith(("0", "root"))
    (cmd,) = [json.loads(rest) for keyword, rest in instructions if keyword == "CMD"]
    assert _app_spec(cmd) in APPS.values()
    assert _dockerignored(".secrets.toml")
    assert _dockerignored(".venv")


def _image_extras() -> list[str]:
    (install,) = [rest for keyword, rest in _dockerfile_instructions() if "pip install" in rest]
    match = re.search(r'"\.\[([\w,-]+)\]"', install)
    assert match, install
    return match[1].split(",")


def _requirements_of_extras(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project["optional-dependencies"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    pending = list(extras)
    seen: set[str] = set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"the image installs extra {extra!r}, pyproject has none"
        for raw in optional[extra]:
            requirement = Requirement(raw)
            if requirement.name == project["name"]:
                pending.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution_closure(requirements: list[Requirement]) -> set[str]:
    """Installed distributions the requirements pull in (markers evaluated here)."""
    closure: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    pending = [(r, frozenset(r.extras)) for r in requirements]
    while pending:
        requirement, extras = pending.pop()
        name = _normalise(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if (name, extras) in visited:
            continue
        visited.add((name, extras))
        closure.add(name)
        for raw in metadata.requires(requirement.name) or []:
            child = Requirement(raw)
            wanted = child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in [*extras, ""]
            )
            if wanted:
                pending.append((child, frozenset(child.extras)))
    return closure


def _third_party_imports(paths: list[Path]) -> dict[str, Path]:
    local = {"insightdb", "examples", "models", "migrations", "seeds"}
    found: dict[str, Path] = {}
    for path in paths:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        type_only = {
            id(node)
            for branch in ast.walk(tree)
            if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
            for statement in branch.body
            for node in ast.walk(statement)
        }
        names: list[str] = []
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.append(node.module)
        if "EmailStr" in source:  # pydantic validates it with email-validator, imported lazily
            names.append("email_validator")
        for name in names:
            top = name.split(".")[0]
            if top not in local and top not in sys.stdlib_module_names:
                found.setdefault(top, path)
    return found


def test_image_extras_provide_every_module_the_services_import() -> None:
    """What the image installs covers the services' imports (it can't be built here)."""
    closure = _distribution_closure(_requirements_of_extras(_image_extras()))
    providers = metadata.packages_distributions()
    paths = [
        *(ROOT / "examples").glob("*/**/*.py"),
        *(ROOT / "models").rglob("*.py"),
        *(ROOT / "migrations").rglob("*.py"),
        *(ROOT / "seeds").rglob("*.py"),
    ]
    missing = {
        module: str(path.relative_to(ROOT))
        for module, path in _third_party_imports(paths).items()
        if not {_normalise(d) for d in providers.get(module, [])} & closure
    }
    assert not missing, (
        f"modules imported by the services but not installed by .[{','.join(_image_extras())}]: "
        f"{missing}"
    )
