"""Deployment files, checked offline: kustomize renders, schemas validate, and what schemas cannot check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from blinkstack.services import SERVICES
from blinkstack.tools import config_table
from tests.helpers import REPO_ROOT

OVERLAYS = ("cpu", "gpu", "cpu-redis-cluster")
MANAGED_REDIS = {"cpu-redis-cluster"}  # overlays on a Redis Cluster outside the namespace
K8S = REPO_ROOT / "deploy" / "k8s"
DOCKER = REPO_ROOT / "deploy" / "docker"
KUBERNETES_VERSION = "1.32.0"
ADDRESS = re.compile(r"^(?:[a-z]+://)?([a-z0-9-]+):(\d+)(?:/.*)?$")


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request, tmp_path_factory) -> tuple[str, Path, list[dict]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomize overlays (kubectl kustomize)"
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / request.param)], capture_output=True, text=True, check=True
    ).stdout
    path = tmp_path_factory.mktemp("k8s") / f"{request.param}.yaml"
    path.write_text(out)
    return request.param, path, [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_schemas_validate_strictly(rendered):
    _, path, _ = rendered
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, "--quiet", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_selects_pods_and_targets_named_ports(rendered):
    _, _, objects = rendered
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        matches = [w for w in workloads(objects) if selector.items() <= pod_labels(w).items()]
        assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} workloads"
        port_names = {p["name"] for c in containers(matches[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)
        assert {"grpc", "metrics"} <= {p["name"] for p in service["spec"]["ports"]} or service["metadata"]["name"] in (
            "redis",
        )


def test_every_address_in_config_names_an_existing_service_and_port(rendered):
    _, _, objects = rendered
    ports = {(s["metadata"]["name"], p["port"]) for s in of_kind(objects, "Service") for p in s["spec"]["ports"]}
    values = [v for cm in of_kind(objects, "ConfigMap") for k, v in cm["data"].items() if k.endswith(("_ADDR", "_URL"))]
    values += [e["value"] for w in workloads(objects) for c in containers(w) for e in c.get("env", []) if "value" in e]
    addresses = [ADDRESS.match(v) for v in values]
    checked = [(m.group(1), int(m.group(2))) for m in addresses if m]
    assert checked, "no service addresses found in the configuration"
    for host, port in checked:
        assert (host, port) in ports, f"{host}:{port} is not a Service port"


def test_probes_use_ports_the_containers_open(rendered):
    _, _, objects = rendered
    for workload in workloads(objects):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            opened = {p["containerPort"] for p in container["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                spec = container[probe]
                port = (spec.get("grpc") or spec.get("httpGet") or spec.get("tcpSocket") or {}).get("port")
                assert (port is None and "exec" in spec) or port in opened, (container["name"], probe)


def test_images_are_pinned_and_containers_are_locked_down(rendered):
    _, _, objects = rendered
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in containers(workload):
            image = container["image"]
            assert re.search(r":[\w.-]+$|@sha256:", image) and not image.endswith(":latest"), image
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), container["name"]
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]


def test_scaling_objects_exist(rendered):
    overlay, _, objects = rendered
    assert {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")} == {
        "detector",
        "eyestate",
    }
    assert {"detector", "eyestate", "aggregator"} <= {
        p["metadata"]["name"] for p in of_kind(objects, "PodDisruptionBudget")
    }
    if overlay in MANAGED_REDIS:
        assert not of_kind(objects, "StatefulSet") and "redis" not in {p["metadata"]["name"] for p in objects}
        return
    redis = next(w for w in of_kind(objects, "StatefulSet") if w["metadata"]["name"] == "redis")
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert redis["spec"]["volumeClaimTemplates"]
    if overlay == "gpu":
        triton = next(w for w in workloads(objects) if w["metadata"]["name"] == "triton")
        container = triton["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert "--model-config-name=gpu" in container["args"]
        assert triton["spec"]["template"]["spec"]["tolerations"]


def allowed_flows(objects: list[dict]) -> set[tuple[str, str, int]]:
    """(from component or client/monitoring, to component, port) for every ingress rule."""
    components = {pod_labels(w)["app.kubernetes.io/component"] for w in workloads(objects)}
    flows = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        spec = policy["spec"]
        selector = spec["podSelector"]
        if "matchLabels" in selector:
            targets = {selector["matchLabels"]["app.kubernetes.io/component"]}
        elif "matchExpressions" in selector:
            targets = set(selector["matchExpressions"][0]["values"])
        else:
            assert spec.get("ingress") is None, "a policy selecting every pod may only deny"
            continue
        for rule in spec.get("ingress", []):
            for source in rule["from"]:
                if "namespaceSelector" in source:
                    name = "ns:" + source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                else:
                    labels = source["podSelector"]["matchLabels"]
                    name = labels.get("app.kubernetes.io/component") or "client"
                for target in targets & components:
                    flows |= {(name, target, p["port"]) for p in rule["ports"]}
    return flows


def test_network_policies_allow_exactly_the_intended_flows(rendered):
    overlay, _, objects = rendered
    metrics = {("ns:monitoring", c, p) for c in ("detector", "eyestate", "aggregator") for p in (9101, 9102, 9103)}
    expected = {
        ("aggregator", "detector", 50051),
        ("aggregator", "eyestate", 50052),
        ("aggregator", "redis", 6379),
        ("client", "aggregator", 50053),
        ("client", "eyestate", 50052),
    } | metrics
    if overlay == "gpu":
        expected |= {("eyestate", "triton", 8001), ("detector", "triton", 8001)}
    if overlay in MANAGED_REDIS:
        expected -= {("aggregator", "redis", 6379)}
    assert allowed_flows(objects) == expected
    deny_all = [p for p in of_kind(objects, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert deny_all and deny_all[0]["spec"]["policyTypes"] == ["Ingress"]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.models"])
def test_dockerfiles_copy_what_exists_and_pin_their_bases(dockerfile):
    instructions = dockerfile_instructions(DOCKER / dockerfile)
    ignored = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    for op, argument in instructions:
        if op == "COPY" and not argument.startswith("--from"):
            *sources, _ = argument.split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"{dockerfile}: COPY {source} does not exist"
                assert source.rstrip("/") not in ignored, f"{dockerfile}: COPY {source} is excluded by .dockerignore"
        if op == "FROM":
            image = argument.split()[0]
            assert image.startswith("${") or (":" in image and not image.endswith(":latest")), image
        if op == "ARG" and argument.startswith("PYTHON_IMAGE="):
            assert re.fullmatch(r"PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+", argument), argument
    assert ("USER", "10001:10001") in instructions
    assert not any(op == "HEALTHCHECK" for op, _ in instructions)


def test_service_image_entrypoint_is_the_blinkstack_command():
    instructions = dict(dockerfile_instructions(DOCKER / "Dockerfile"))
    entrypoint = yaml.safe_load(instructions["ENTRYPOINT"])
    assert entrypoint == ["blinkstack", "serve"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["blinkstack"] == "blinkstack.cli:main"
    for service in SERVICES:
        out = subprocess.run(
            [sys.executable, "-m", "blinkstack.cli", "serve", service, "--help"], capture_output=True, text=True
        )
        assert out.returncode == 0 and "--port" in out.stdout, service


def test_manifests_follow_the_service_contract(rendered):
    """Each service's Deployment serves it on the contract's ports, and every BLINKSTACK_* name the manifests set
    is one the configuration table lists (a typo would be silently ignored by the service)."""
    _, _, objects = rendered
    deployments = {w["metadata"]["name"]: w for w in of_kind(objects, "Deployment")}
    for spec in SERVICES.values():
        container = next(c for c in containers(deployments[spec.name]) if c["name"] == spec.name)
        assert container["args"] == [spec.name]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert (ports["grpc"], ports["metrics"]) == (spec.port, spec.metrics_port)
    known = {row[0] for row in config_table.rows()}
    set_names = {k for cm in of_kind(objects, "ConfigMap") for k in cm["data"] if k.startswith("BLINKSTACK_")}
    set_names |= {
        e["name"]
        for w in workloads(objects)
        for c in containers(w)
        for e in c.get("env", [])
        if "BLINKSTACK_" in e["name"]
    }
    assert set_names and set_names <= known, f"not read by any service: {sorted(set_names - known)}"


def test_overlays_turn_on_tls_mtls_tokens_and_probe_the_plaintext_health_port(rendered):
    _, _, objects = rendered
    (config,) = [cm["data"] for cm in of_kind(objects, "ConfigMap") if cm["metadata"]["name"] == "blinkstack-config"]
    assert config["BLINKSTACK_REFLECTION"] == "false"
    health_port = int(config["BLINKSTACK_HEALTH_PORT"])
    needed = ("BLINKSTACK_TLS_CERT", "BLINKSTACK_TLS_KEY", "BLINKSTACK_TLS_CLIENT_CA", "BLINKSTACK_TOKENS_FILE")
    for spec in SERVICES.values():
        workload = next(w for w in workloads(objects) if w["metadata"]["name"] == spec.name)
        container = next(c for c in containers(workload) if c["name"] == spec.name)
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        for name in needed:  # every file the service is told to read is inside a mounted Secret
            assert any(config[name].startswith(mount + "/") for mount in mounts), (spec.name, name)
        secrets = {v["secret"]["secretName"] for v in workload["spec"]["template"]["spec"]["volumes"] if "secret" in v}
        assert {"blinkstack-tls", "blinkstack-tokens"} <= secrets
        assert {"name": "health", "containerPort": health_port} in container["ports"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == health_port, (spec.name, probe)
    for triton in (w for w in workloads(objects) if w["metadata"]["name"] == "triton"):  # the gpu overlay
        args = triton["spec"]["template"]["spec"]["containers"][0]["args"]
        assert {"--grpc-use-ssl=true", "--grpc-use-ssl-mutual=true"} <= set(args)
        assert config["BLINKSTACK_TRITON_CA"] == config["BLINKSTACK_TLS_CA"]


def test_redis_needs_a_password_from_a_secret_and_never_evicts_state(rendered):
    overlay, _, objects = rendered
    if overlay in MANAGED_REDIS:
        (config,) = of_kind(objects, "ConfigMap")
        assert (
            config["data"]["BLINKSTACK_REDIS_CLUSTER"] == "true" and int(config["data"]["BLINKSTACK_EVENT_SHARDS"]) > 1
        )
        aggregator = next(c for w in workloads(objects) if w["metadata"]["name"] == "aggregator" for c in containers(w))
        (url,) = [e for e in aggregator["env"] if e["name"] == "BLINKSTACK_REDIS_URL"]
        assert url["valueFrom"]["secretKeyRef"] == {"name": "blinkstack-redis", "key": "url"}
        return
    redis_container = next(c for w in workloads(objects) if w["metadata"]["name"] == "redis" for c in containers(w))
    args = redis_container["args"]

    def value(flag: str) -> str:
        return args[args.index(flag) + 1]

    assert value("--protected-mode") == "yes" and value("--maxmemory-policy") == "noeviction"
    assert value("--requirepass") == "$(REDIS_PASSWORD)" and value("--rename-command") == "CONFIG"
    (password,) = [e for e in redis_container["env"] if e["name"] == "REDIS_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == "blinkstack-redis"
    aggregator = next(c for w in workloads(objects) if w["metadata"]["name"] == "aggregator" for c in containers(w))
    (url,) = [e for e in aggregator["env"] if e["name"] == "BLINKSTACK_REDIS_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "blinkstack-redis", "key": "url"}
    for cm in of_kind(objects, "ConfigMap"):
        assert "BLINKSTACK_REDIS_URL" not in cm["data"]  # a URL there would carry the password in plain sight
