"""deploy/: the images, the Compose file and the Kubernetes manifests, checked offline.

Nothing is built or run: there is no Docker engine or cluster here. Instead every file is
parsed and validated against its schema (Kubernetes' own API schemas, the Compose
Specification, a schema for the KEDA fields used), and cross-checked against the code: each
variable set is a real setting, each service gets what it needs and nothing it must not
have, probes hit the ops ports the services are told to listen on, grace periods outlast
the runner's drain, selectors select, and the runners' network policies let them reach
NATS and the internet but not PostgreSQL. The headful runner (the runner image's stage
"headful", Deployment and compose service "runner-headful") gets the same checks as the
runner, plus its viewer port, and stays off (0 replicas, a compose profile) and out of
KEDA's scaling.
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import functools
import io
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from figranium_common import nats as topology
from figranium_common import probes
from figranium_common.config import Config
from figranium_devstack import natsauth
from tests.deploy import kustomize
from tests.deploy.kustomize import Obj, Pod

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_DIR = DEPLOY / "compose"
SCHEMAS = Path(__file__).parent / "schemas"
KUBERNETES_VERSION = "1.30.0"

SERVICES = ("gateway", "runner", "scheduler")
HEADFUL = "runner-headful"
# Every Deployment and compose service of ours: the services, and the runner once more as
# the headful runner.
WORKLOADS = (*SERVICES, HEADFUL)
RUNNERS = ("runner", HEADFUL)
METRICS_PORT_VARIABLE = {
    "gateway": "GATEWAY_METRICS_PORT",
    "runner": "RUNNER_METRICS_PORT",
    HEADFUL: "RUNNER_METRICS_PORT",
    "scheduler": "SCHEDULER_METRICS_PORT",
}
ALIASES = frozenset(str(f.alias) for f in Config.model_fields.values())
# Variables set in deploy/ that are not Figranium settings, and who reads them.
THIRD_PARTY = {
    "POSTGRES_USER": "the postgres image",
    "POSTGRES_DB": "the postgres image",
    "POSTGRES_PASSWORD": "the postgres image (and DATABASE_URL, built from it by compose)",
    **{
        f"NATS_{role.upper()}_PASSWORD": "nats.conf (and that service's NATS_PASSWORD)"
        for role in natsauth.ROLES
    },
}
IMAGE_THIRD_PARTY = {
    "PATH": "the shell",
    "PYTHONUNBUFFERED": "CPython",
    "PYTHONDONTWRITEBYTECODE": "CPython",
    "PLAYWRIGHT_BROWSERS_PATH": "Playwright (where it looks for its ffmpeg)",
    "UV_COMPILE_BYTECODE": "uv",
    "UV_LINK_MODE": "uv",
    "UV_PYTHON_DOWNLOADS": "uv",
    "UV_PYTHON": "uv",
    "UV_PROJECT_ENVIRONMENT": "uv",
}
_NATS = {"NATS_URL", "NATS_USER", "NATS_PASSWORD"}
REQUIRED = {
    "gateway": {"DATABASE_URL", *_NATS, "FIGRANIUM_MASTER_KEY", "FIGRANIUM_API_KEY"},
    "runner": {*_NATS, "CHROMIUM_PATH", "CHROMIUM_HEADLESS_PATH"},
    HEADFUL: {*_NATS, "CHROMIUM_PATH", "RUNNER_HEADFUL", "NOVNC_PORT", "NOVNC_PUBLIC_URL"},
    "scheduler": {"DATABASE_URL", *_NATS, "FIGRANIUM_MASTER_KEY"},
}
# Each workload's NATS user: the headful runner is a runner.
NATS_ROLE = {"gateway": "gateway", "runner": "runner", HEADFUL: "runner", "scheduler": "scheduler"}
SECRET_NAMES = {"DATABASE_URL", "FIGRANIUM_MASTER_KEY", "FIGRANIUM_API_KEY", "POSTGRES_PASSWORD"}
PRIVATE_ADDRESSES = ("10.0.3.7", "172.20.1.2", "192.168.1.10", "169.254.169.254", "100.64.0.9")
FALSE = {"false", "0", "no", "off", ""}


def settings_from(values: dict[str, str]) -> Config:
    """Parse values as the services would, ignoring this process's environment."""
    return Config.model_validate(values)


# ======================================================================================
# Kubernetes
# ======================================================================================

BUILDS = {"base": K8S / "base", "overlay": K8S / "overlays" / "example"}


@functools.cache
def _rendered(build: str) -> tuple[Obj, ...]:
    return tuple(kustomize.build(BUILDS[build]))


def secret_example() -> Obj:
    return kustomize.find(kustomize.build(K8S / "secret-example"), "Secret", "figranium-secrets")


@pytest.fixture(params=sorted(BUILDS))
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    return copy.deepcopy(list(_rendered(request.param)))


class SecretRef(NamedTuple):
    secret: str
    key: str


def secret_in(objects: list[Obj], name: str) -> Obj:
    """The Secret the manifests refer to: rendered (overlay) or the template (base)."""
    found = [o for o in objects if o["kind"] == "Secret" and kustomize.name_of(o) == name]
    if found:
        return found[0]
    examples = kustomize.build(K8S / "secret-example")
    templates = [o for o in examples if o["kind"] == "Secret" and kustomize.name_of(o) == name]
    assert templates, f"no Secret {name!r}, not even the example"
    return templates[0]


def secret_keys(secret: Obj) -> set[str]:
    return {*secret.get("stringData", {}), *secret.get("data", {})}


def container_env(container: Obj, objects: list[Obj]) -> dict[str, str | SecretRef]:
    env: dict[str, str | SecretRef] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = kustomize.find(objects, "ConfigMap", source["configMapRef"]["name"])
            env.update(config["data"])
        else:
            name = source["secretRef"]["name"]
            env.update({key: SecretRef(name, key) for key in secret_keys(secret_in(objects, name))})
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        reference = entry["valueFrom"]
        if "secretKeyRef" in reference:
            ref = SecretRef(reference["secretKeyRef"]["name"], reference["secretKeyRef"]["key"])
            assert ref.key in secret_keys(secret_in(objects, ref.secret)), ref
            env[entry["name"]] = ref
        else:
            ref_ = reference["configMapKeyRef"]
            env[entry["name"]] = kustomize.find(objects, "ConfigMap", ref_["name"])["data"][
                ref_["key"]
            ]
    return env


def deployment(objects: list[Obj], service: str) -> Obj:
    return kustomize.find(objects, "Deployment", service)


def main_container(objects: list[Obj], service: str) -> Obj:
    (container,) = deployment(objects, service)["spec"]["template"]["spec"]["containers"]
    assert container["name"] == service
    return dict(container)


def service_env(objects: list[Obj], service: str) -> dict[str, str | SecretRef]:
    return container_env(main_container(objects, service), objects)


def plain(env: dict[str, str | SecretRef]) -> dict[str, str]:
    return {k: v for k, v in env.items() if isinstance(v, str)}


def pod_labels(objects: list[Obj], service: str) -> dict[str, str]:
    return dict(deployment(objects, service)["spec"]["template"]["metadata"]["labels"])


def container_port(container: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def quantity_bytes(quantity: str) -> float:
    """A Kubernetes memory quantity (``512Mi``, ``1Gi``, ``1G``) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity)


def nginx_size(size: str) -> int:
    """An nginx size (``12m``, ``512k``, ``1024``) in bytes."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    if size[-1].lower() in units:
        return int(size[:-1]) * units[size[-1].lower()]
    return int(size)


def default(setting: str) -> object:
    """A setting's default, whatever this process's environment says."""
    return Config.model_fields[setting].default


def validate_kubernetes(obj: Obj) -> None:
    """Kubernetes' OpenAPI schema, strictly (unknown fields fail), with a short message."""
    problem = None
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path)
        problem = f"{obj['kind']}/{kustomize.name_of(obj)} at /{where}: {error.message}"
    if problem:  # outside the handler: the chained error would print the whole schema
        pytest.fail(problem)


def test_kubernetes_objects_are_valid(objects: list[Obj]) -> None:
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: test_runner_scaled_object checks it
        validate_kubernetes(obj)


def test_kustomize_builds_what_kubectl_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the Python rendering is used alone")

    def keyed(docs: list[Obj]) -> dict[tuple[str, str, str], Obj]:
        return {
            (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs
        }

    for build, directory in BUILDS.items():
        output = subprocess.run(
            [kubectl, "kustomize", str(directory)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        theirs = keyed([d for d in yaml.safe_load_all(output) if d])
        ours = keyed(list(_rendered(build)))
        assert sorted(ours) == sorted(theirs), build
        for key, obj in ours.items():
            assert obj == theirs[key], f"{build}: {key} differs from kubectl kustomize"


def test_the_expected_objects_are_there(objects: list[Obj]) -> None:
    present = {(o["kind"], kustomize.name_of(o)) for o in objects}
    expected = {("Namespace", "figranium"), ("ConfigMap", "figranium-config")}
    for service in SERVICES:
        expected |= {
            ("Deployment", service),
            ("Service", service),
            ("PodDisruptionBudget", service),
        }
    expected |= {
        ("HorizontalPodAutoscaler", "gateway"),
        ("Ingress", "gateway"),
        ("ScaledObject", "runner"),
        ("NetworkPolicy", "runner"),
        ("NetworkPolicy", "postgresql"),
        ("NetworkPolicy", "nats"),
        ("Deployment", HEADFUL),
        ("Service", HEADFUL),
        ("NetworkPolicy", HEADFUL),
    }
    assert expected <= present, expected - present
    # At 0 or 1 replica a budget protects nothing (runner-headful.yaml says why).
    assert ("PodDisruptionBudget", HEADFUL) not in present
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "figranium", obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "figranium"


def test_every_variable_is_a_setting(objects: list[Obj]) -> None:
    config = kustomize.find(objects, "ConfigMap", "figranium-config")
    assert set(config["data"]) <= ALIASES, set(config["data"]) - ALIASES
    assert all(isinstance(v, str) for v in config["data"].values())
    keys = secret_keys(secret_example())
    assert keys <= ALIASES, keys - ALIASES
    for service in WORKLOADS:
        names = {e["name"] for e in main_container(objects, service).get("env", [])}
        assert names <= ALIASES, (service, names - ALIASES)


def test_each_service_gets_what_it_needs_and_no_more(objects: list[Obj]) -> None:
    for service in WORKLOADS:
        env = service_env(objects, service)
        assert REQUIRED[service] <= set(env), (service, REQUIRED[service] - set(env))
        config = settings_from(plain(env))  # every value parses as that setting
        assert not config.allow_private_networks, service
        assert not config.allow_metadata_address, service
        assert config.auth == "on"
        for name in SECRET_NAMES & set(env):
            assert isinstance(env[name], SecretRef), f"{service}: {name} is not from a Secret"
    for name in RUNNERS:
        runner = service_env(objects, name)
        assert "DATABASE_URL" not in runner, name
        secrets = {k: v for k, v in runner.items() if isinstance(v, SecretRef)}
        assert secrets == {
            "NATS_PASSWORD": SecretRef("figranium-nats", "NATS_RUNNER_PASSWORD"),
            "FIGRANIUM_TRANSIT_KEY": SecretRef("figranium-secrets", "FIGRANIUM_TRANSIT_KEY"),
        }
        assert "FIGRANIUM_MASTER_KEY" not in runner, name
        assert runner["CHROMIUM_PATH"] == "/usr/bin/chromium"
    assert not settings_from(plain(service_env(objects, "runner"))).runner_headful
    runner = service_env(objects, "runner")
    gateway, scheduler = service_env(objects, "gateway"), service_env(objects, "scheduler")
    assert gateway["FIGRANIUM_MASTER_KEY"] == scheduler["FIGRANIUM_MASTER_KEY"]
    assert gateway["DATABASE_URL"] == scheduler["DATABASE_URL"]
    assert settings_from(plain(gateway)).trust_forwarded_for  # behind the ingress controller
    # The RUNS consumers are declared by gateways and runners: their limits must agree.
    for name in ("RUN_ACK_WAIT_SECONDS", "RUN_MAX_DELIVER"):
        assert gateway.get(name) == runner.get(name), name
        assert gateway.get(name) == service_env(objects, HEADFUL).get(name), name


def test_secret_template() -> None:
    secret = secret_example()
    assert secret["type"] == "Opaque"
    assert secret_keys(secret) == {
        "DATABASE_URL",
        "FIGRANIUM_MASTER_KEY",
        "FIGRANIUM_API_KEY",
        "FIGRANIUM_TRANSIT_KEY",
    }
    text = (K8S / "secret-example" / "secret.example.yaml").read_text()
    assert "kubectl -n figranium create secret generic figranium-secrets" in text
    assert "openssl rand -base64 32" in text
    database = urlsplit(secret["stringData"]["DATABASE_URL"])
    assert database.scheme == "postgresql"
    assert database.hostname == "postgresql.figranium.svc.cluster.local"
    assert database.port == 5432


def test_probes_use_the_ops_ports(objects: list[Obj]) -> None:
    for service in WORKLOADS:
        container = main_container(objects, service)
        port = int(plain(service_env(objects, service))[METRICS_PORT_VARIABLE[service]])
        liveness, readiness = container["livenessProbe"], container["readinessProbe"]
        assert liveness["httpGet"]["path"] == "/livez", service
        assert readiness["httpGet"]["path"] == "/readyz", service
        assert container_port(container, liveness["httpGet"]["port"]) == port, service
        assert container_port(container, readiness["httpGet"]["port"]) == port, service
        # A hanging readiness check is answered 503 (with its reason) within this bound.
        assert readiness["timeoutSeconds"] > probes.READINESS_TIMEOUT_SECONDS, service
        annotations = deployment(objects, service)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
    gateway = main_container(objects, "gateway")
    port = int(plain(service_env(objects, "gateway"))["PORT"])
    assert container_port(gateway, "http") == port


def test_grace_periods_outlast_the_drain(objects: list[Obj]) -> None:
    for name in RUNNERS:
        runner = deployment(objects, name)["spec"]["template"]["spec"]
        drain = settings_from(plain(service_env(objects, name))).runner_drain_seconds
        assert runner["terminationGracePeriodSeconds"] >= drain + 10, name
    gateway = deployment(objects, "gateway")["spec"]["template"]["spec"]
    (container,) = gateway["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and 2 <= int(command[1]) <= 15
    # The gateway's own shutdown takes up to 3 s after the preStop pause.
    assert gateway["terminationGracePeriodSeconds"] > int(command[1]) + 3
    for service in SERVICES:
        strategy = deployment(objects, service)["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, service
    # One viewer address per headful runner: old and new pod must not overlap behind it.
    assert deployment(objects, HEADFUL)["spec"]["strategy"] == {"type": "Recreate"}


def test_selectors_select_their_own_deployment(objects: list[Obj]) -> None:
    deployments = [o for o in objects if o["kind"] == "Deployment"]

    def selected(selector: dict[str, str]) -> list[str]:
        return [
            kustomize.name_of(d)
            for d in deployments
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]

    for d in deployments:
        selector = d["spec"]["selector"]["matchLabels"]
        assert selected(selector) == [kustomize.name_of(d)]
        for constraint in d["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
            assert constraint["labelSelector"]["matchLabels"] == selector
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in (o for o in objects if o["kind"] == kind):
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert selected(selector) == [kustomize.name_of(obj)], (kind, obj["metadata"])
    for obj in (o for o in objects if o["kind"] == "Service"):
        container = main_container(objects, kustomize.name_of(obj))
        for port in obj["spec"]["ports"]:
            assert container_port(container, port["targetPort"]) == port["port"], port
    assert [p["port"] for p in kustomize.find(objects, "Service", "gateway")["spec"]["ports"]] == [
        11345,
        9465,
    ]
    for service in ("runner", "scheduler"):
        ports = kustomize.find(objects, "Service", service)["spec"]["ports"]
        assert [p["name"] for p in ports] == ["metrics"]
    ports = kustomize.find(objects, "Service", HEADFUL)["spec"]["ports"]
    assert {p["name"]: p["port"] for p in ports} == {
        "novnc": settings_from(plain(service_env(objects, HEADFUL))).novnc_port,
        "metrics": int(plain(service_env(objects, HEADFUL))["RUNNER_METRICS_PORT"]),
    }


def test_gateway_autoscaling_and_ingress(objects: list[Obj]) -> None:
    hpa = kustomize.find(objects, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert 2 <= hpa["minReplicas"] <= deployment(objects, "gateway")["spec"]["replicas"]
    assert hpa["minReplicas"] < hpa["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    container = main_container(objects, "gateway")
    assert "cpu" in container["resources"]["requests"]  # utilisation is relative to it

    ingress = kustomize.find(objects, "Ingress", "gateway")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    run_timeout = settings_from(plain(service_env(objects, "gateway"))).run_timeout_seconds
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > run_timeout
    body = nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    max_body = settings_from(plain(service_env(objects, "gateway"))).max_body_bytes
    assert body > max_body
    service = kustomize.find(objects, "Service", "gateway")
    port_names = {p["name"] for p in service["spec"]["ports"]}
    hosts = []
    for rule in ingress["spec"]["rules"]:
        hosts.append(rule["host"])
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["name"] == "gateway"
            assert path["backend"]["service"]["port"]["name"] in port_names
    assert [h for tls in ingress["spec"]["tls"] for h in tls["hosts"]] == hosts


def test_pods_are_locked_down(objects: list[Obj]) -> None:
    for service in WORKLOADS:
        pod = deployment(objects, service)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 1000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        mounts = {}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{service}: a read-only root needs a writable /tmp"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        assert all("emptyDir" in volumes[name] for name in mounts.values())
    for name in RUNNERS:
        runner = main_container(objects, name)
        assert quantity_bytes(runner["resources"]["limits"]["memory"]) >= 2**30
        volumes = {
            v["name"]: v for v in deployment(objects, name)["spec"]["template"]["spec"]["volumes"]
        }
        mounts = {m["mountPath"]: m["name"] for m in runner["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert "/home/figranium" in mounts  # Chromium's caches under $HOME


def test_runner_scaled_object(objects: list[Obj]) -> None:
    scaled = kustomize.find(objects, "ScaledObject", "runner")
    schema = json.loads((SCHEMAS / "scaledobject.schema.json").read_text())
    jsonschema.validate(scaled, schema, cls=jsonschema.Draft202012Validator)
    spec = scaled["spec"]
    # The HPA KEDA creates carries this behaviour: check it against Kubernetes' own schema.
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    validate_kubernetes(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "keda-hpa-runner"},
            "spec": {
                "scaleTargetRef": spec["scaleTargetRef"],
                "minReplicas": spec["minReplicaCount"],
                "maxReplicas": spec["maxReplicaCount"],
                "behavior": behavior,
            },
        }
    )
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] == "runner"
    kustomize.find(objects, "Deployment", target["name"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    env = settings_from(plain(service_env(objects, "runner")))
    assert spec["cooldownPeriod"] > env.run_timeout_seconds
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    assert meta["stream"] == topology.RUNS_STREAM
    assert meta["consumer"] == topology.RUNNERS_CONSUMER
    assert meta["consumer"] != topology.HEADFUL_CONSUMER
    # The users of natsauth (every NATS configuration) declare no accounts: all are in the
    # global one. tests/integration/test_keda_metric.py reads the metric there.
    assert meta["account"] == "$G"
    assert "accounts" not in natsauth.compose_config()
    assert "accounts" not in yaml.safe_load(natsauth.kubernetes_values())["config"]["merge"]
    assert int(meta["lagThreshold"]) == env.runner_concurrency
    host, port = meta["natsServerMonitoringEndpoint"].rsplit(":", 1)
    assert host == urlsplit(env.nats_url).hostname
    assert port == "8222"


def test_headful_runner_is_off_and_apart(objects: list[Obj]) -> None:
    headful = deployment(objects, HEADFUL)
    assert headful["spec"]["replicas"] == 0, "started by hand: kubectl scale --replicas=1"
    # Nothing scales it: KEDA reads the runners' consumer only (test_runner_scaled_object).
    for obj in objects:
        if obj["kind"] in ("ScaledObject", "HorizontalPodAutoscaler"):
            assert obj["spec"]["scaleTargetRef"]["name"] != HEADFUL, kustomize.name_of(obj)
    container = main_container(objects, HEADFUL)
    config = settings_from(plain(service_env(objects, HEADFUL)))
    assert config.runner_headful
    assert config.runner_concurrency == 1  # one display, one run
    assert config.novnc_port == default("novnc_port")
    assert container_port(container, "novnc") == config.novnc_port
    # The placeholder fits `kubectl port-forward svc/runner-headful <port>`.
    public = urlsplit(str(config.novnc_public_url))
    assert public.scheme in ("http", "https") and public.hostname
    assert public.port == config.novnc_port
    # The same runner image, its headful stage.
    name, _ = kustomize.split_image(container["image"])
    assert name.endswith("runner-headful")
    # Same Chromium settings as the runner, where they are not about being headful.
    runner = plain(service_env(objects, "runner"))
    for key, value in plain(service_env(objects, HEADFUL)).items():
        if key in runner and key not in ("RUNNER_CONCURRENCY",):
            assert runner[key] == value, key


def _runner_pod(objects: list[Obj], name: str = "runner") -> Pod:
    return Pod(pod_labels(objects, name), "figranium", "10.244.1.20")


@pytest.mark.parametrize("name", RUNNERS)
def test_runner_network_policy(objects: list[Obj], name: str) -> None:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    runner = _runner_pod(objects, name)
    nats = Pod({"app.kubernetes.io/name": "nats"}, "figranium", "10.244.2.5")
    dns = Pod({"k8s-app": "kube-dns"}, "kube-system", "10.244.0.10")
    postgres = Pod({"app.kubernetes.io/name": "postgresql"}, "figranium", "10.244.3.7")
    gateway = Pod(pod_labels(objects, "gateway"), "figranium", "10.244.1.30")
    nats_port = urlsplit(settings_from(plain(service_env(objects, name))).nats_url).port

    assert nats_port == 4222
    assert kustomize.egress_allowed(policies, runner, nats, 4222)
    assert kustomize.egress_allowed(policies, runner, dns, 53, "UDP")
    assert kustomize.egress_allowed(policies, runner, dns, 53, "TCP")
    for address in ("93.184.215.14", "8.8.8.8", "2606:4700::6810:85e5"):
        assert kustomize.egress_allowed(policies, runner, address, 443), address
    assert kustomize.egress_allowed(policies, runner, "93.184.215.14", 8080)
    # Not PostgreSQL, not the other services, nothing private or link-local.
    assert not kustomize.egress_allowed(policies, runner, postgres, 5432)
    assert not kustomize.egress_allowed(policies, runner, gateway, 11345)
    assert not kustomize.egress_allowed(policies, runner, nats, 8222)
    for address in PRIVATE_ADDRESSES:
        for port in (5432, 80, 443, 4222):
            assert not kustomize.egress_allowed(policies, runner, address, port), (address, port)
    assert not kustomize.egress_allowed(policies, runner, "fd00:ec2::254", 80)
    # No rule that admits port 5432 may name a pod, a namespace or a private range.
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            ports = rule.get("ports") or [{}]
            if not any(p.get("port") in (None, 5432) for p in ports):
                continue
            for peer in rule.get("to", []):
                assert set(peer) == {"ipBlock"}, peer
                network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                excluded = [ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", [])]
                for address in PRIVATE_ADDRESSES:
                    ip = ipaddress.ip_address(address)
                    if ip.version == network.version and ip in network:
                        assert any(ip in e for e in excluded), (address, peer)
    # Prometheus may scrape the ops port; viewers reach a headful runner's noVNC port;
    # nothing else comes in (no DevTools, no VNC: x11vnc stays on 127.0.0.1).
    monitoring = Pod({"app": "prometheus"}, "monitoring", "10.244.4.4")
    port = int(plain(service_env(objects, name))["RUNNER_METRICS_PORT"])
    assert kustomize.ingress_allowed(policies, runner, monitoring, port)
    for closed in (9222, 5900):
        assert not kustomize.ingress_allowed(policies, runner, monitoring, closed)
        assert not kustomize.ingress_allowed(policies, runner, "203.0.113.7", closed)
    novnc = default("novnc_port")
    assert isinstance(novnc, int)
    ingress_controller = Pod({"app": "ingress-nginx"}, "ingress-nginx", "10.244.6.6")
    for viewer in (ingress_controller, "203.0.113.7"):
        allowed = kustomize.ingress_allowed(policies, runner, viewer, novnc)
        assert allowed is (name == HEADFUL), (name, viewer)


def test_headful_runner_is_fenced_in_like_runners(objects: list[Obj]) -> None:
    runner = kustomize.find(objects, "NetworkPolicy", "runner")["spec"]
    headful = kustomize.find(objects, "NetworkPolicy", HEADFUL)["spec"]
    assert headful["egress"] == runner["egress"]
    assert headful["policyTypes"] == runner["policyTypes"] == ["Ingress", "Egress"]
    # Each policy is its own runner's: the runner's does not select headful pods.
    assert runner["podSelector"]["matchLabels"].items() <= pod_labels(objects, "runner").items()
    assert not runner["podSelector"]["matchLabels"].items() <= pod_labels(objects, HEADFUL).items()


def test_only_keda_reaches_the_nats_monitoring_port(objects: list[Obj]) -> None:
    """/jsz (every stream, consumer, connection) is for KEDA's scaler only; the clients'
    port is for Figranium's services, the routes' port for the other NATS nodes."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    nats = Pod(
        {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"},
        "figranium",
        "10.244.2.5",
    )
    peer_node = Pod(nats.labels, "figranium", "10.244.2.6")
    keda = Pod({"app": "keda-operator"}, "keda", "10.244.7.7")
    prometheus = Pod({"app": "prometheus"}, "monitoring", "10.244.4.4")
    stranger = Pod({"app": "other"}, "default", "10.244.5.5")
    box = Pod(
        {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats-box"},
        "figranium",
        "10.244.2.9",
    )
    services = [Pod(pod_labels(objects, name), "figranium", "10.244.1.40") for name in WORKLOADS]
    port = int(
        kustomize.find(objects, "ScaledObject", "runner")["spec"]["triggers"][0]["metadata"][
            "natsServerMonitoringEndpoint"
        ].rsplit(":", 1)[1]
    )

    assert kustomize.ingress_allowed(policies, nats, keda, port)
    for other in (*services, prometheus, stranger, box, peer_node, "203.0.113.7"):
        assert not kustomize.ingress_allowed(policies, nats, other, port), other
    for client in (*services, box):
        assert kustomize.ingress_allowed(policies, nats, client, 4222), client
    for outsider in (keda, stranger, "203.0.113.7"):
        assert not kustomize.ingress_allowed(policies, nats, outsider, 4222), outsider
    assert kustomize.ingress_allowed(policies, nats, peer_node, 6222)
    for outsider in (*services, keda, stranger):
        assert not kustomize.ingress_allowed(policies, nats, outsider, 6222), outsider
    # The chart's Service carries the monitoring port (nats-values.yaml), for KEDA.
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    assert values["service"]["ports"]["monitor"]["enabled"]


def test_only_gateways_and_schedulers_reach_postgresql(objects: list[Obj]) -> None:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    postgres = Pod({"app.kubernetes.io/name": "postgresql"}, "figranium", "10.244.3.7")
    for service in ("gateway", "scheduler"):
        client = Pod(pod_labels(objects, service), "figranium", "10.244.1.40")
        assert kustomize.ingress_allowed(policies, postgres, client, 5432), service
        assert kustomize.egress_allowed(policies, client, postgres, 5432), service
    for name in RUNNERS:
        assert not kustomize.ingress_allowed(policies, postgres, _runner_pod(objects, name), 5432)
    stranger = Pod({"app": "other"}, "default", "10.244.5.5")
    assert not kustomize.ingress_allowed(policies, postgres, stranger, 5432)


def test_overlay_sets_images_replicas_and_host() -> None:
    base, overlay = list(_rendered("base")), list(_rendered("overlay"))
    for service in WORKLOADS:
        name, tag = kustomize.split_image(main_container(overlay, service)["image"])
        assert name == f"registry.example.com/figranium/{service}"
        assert tag and tag != "latest"
        assert kustomize.split_image(main_container(base, service)["image"])[0] == (
            f"figranium-{service}"
        )
    assert deployment(overlay, "gateway")["spec"]["replicas"] == 3
    hpa = kustomize.find(overlay, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["minReplicas"] == 3
    assert deployment(overlay, "scheduler")["spec"]["replicas"] == 2
    assert kustomize.find(overlay, "Ingress", "gateway")["spec"]["rules"][0]["host"] == (
        "figranium.example.org"
    )
    secret = kustomize.find(overlay, "Secret", kustomize.name_of(secret_example()))
    assert secret["stringData"] == secret_example()["stringData"]
    names = {kustomize.name_of(o) for o in overlay if o["kind"] == "Secret"}
    assert names == {"figranium-secrets", "figranium-nats"}
    assert not [o for o in base if o["kind"] == "Secret"], "the base only refers to the Secret"


# ======================================================================================
# Docker Compose
# ======================================================================================

COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)
_ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def env_example(*, commented: bool = False) -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match and (commented or not match["comment"]):
            values[match["name"]] = match["value"]
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":-", "-"):
            missing = not value if op == ":-" else value is None
            return arg if missing else str(value)
        if value is None or (op == ":?" and not value):
            raise KeyError(f"{name}: {arg or 'required'}")
        return value

    return _INTERPOLATION.sub(substitute, text)


def compose(env: dict[str, str] | None = None) -> Obj:
    text = COMPOSE_FILE.read_text()
    if env is not None:
        text = interpolate(text, env)
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def compose_env(service: Obj) -> dict[str, str]:
    """What a container sees: its env_file(s), then its environment."""
    env: dict[str, str] = {}
    files = service.get("env_file", [])
    for entry in [files] if isinstance(files, str | dict) else files:
        path = entry if isinstance(entry, str) else entry["path"]
        assert path == ".env", "the only env file is .env (from .env.example)"
        env.update(env_example())
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: "" if v is None else str(v) for k, v in environment.items()})
    return env


def duration_seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(amount) * units[unit]
    return total


def test_compose_matches_the_compose_specification() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    for document in (compose(), compose(env_example())):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_topology() -> None:
    services = compose(env_example())["services"]
    assert set(services) == {"postgres", "nats", "gateway", *WORKLOADS, "lb"}
    lb_ports = [str(p) for p in services["lb"]["ports"]]
    assert lb_ports == ["11345:11345"]
    assert services["gateway"]["deploy"]["replicas"] >= 2
    for name in ("gateway", "runner", "scheduler"):
        service = services[name]
        assert "container_name" not in service, f"{name} must be scalable"
        assert "ports" not in service, f"{name} publishes no host port (the lb does)"
        build = service["build"]
        dockerfile = (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile == DEPLOY / "docker" / f"{name}.Dockerfile"
        assert (COMPOSE_DIR / build["context"]).resolve() == REPO
    assert services["runner"]["deploy"]["replicas"] >= 1
    # The headful runner only comes up with `--profile headful`, and everything else always.
    for name, service in services.items():
        assert service.get("profiles", []) == (["headful"] if name == HEADFUL else []), name
    headful = services[HEADFUL]
    build = headful["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == (
        DEPLOY / "docker" / "runner.Dockerfile"
    )
    assert build["target"] == "headful"
    assert "headful" in dockerfile_stage_names("runner")
    assert headful["image"] != services["runner"]["image"]
    assert "container_name" not in headful
    assert headful["deploy"]["replicas"] == 1
    # The viewer's port is published (browsers reach it directly); the ops port is not.
    novnc = settings_from(compose_env(headful)).novnc_port
    assert [str(p) for p in headful["ports"]] == [f"{novnc}:{novnc}"]
    assert set(headful["depends_on"]) == set(services["runner"]["depends_on"]) == {"nats"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency], dependency
    # PostgreSQL and NATS keep their data in named volumes.
    volumes = compose()["volumes"]
    postgres_mounts = dict(v.split(":", 1) for v in services["postgres"]["volumes"])
    assert postgres_mounts["postgres-data"] == "/var/lib/postgresql/data"
    nats = services["nats"]
    command = nats["command"]
    assert "-js" in command
    store = command[command.index("-sd") + 1]
    assert dict(v.split(":", 1) for v in nats["volumes"])["nats-data"] == store
    # Monitoring only inside the container (nats.conf), for its healthcheck: not published,
    # not exposed, and no "-m" that would bind it on every address.
    assert "-m" not in command and "--http_port" not in command
    assert "ports" not in nats
    assert [str(p) for p in nats["expose"]] == ["4222"]
    assert natsauth.COMPOSE_MONITORING.strip().endswith('http: "127.0.0.1:8222"')
    assert natsauth.COMPOSE_MONITORING in (COMPOSE_DIR / "nats.conf").read_text()
    assert {"postgres-data", "nats-data"} <= set(volumes)
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8222/healthz" in nats["healthcheck"]["test"]
    config = command[command.index("-c") + 1]
    assert dict(v.split(":", 2)[:2] for v in nats["volumes"])["./nats.conf"] == config
    mounted = services["lb"]["volumes"][0].split(":")[0]
    assert (COMPOSE_DIR / mounted).is_file()


def test_compose_environment() -> None:
    example = env_example(commented=True)
    assert set(example) <= ALIASES | set(THIRD_PARTY), set(example) - ALIASES - set(THIRD_PARTY)
    raw = COMPOSE_FILE.read_text()
    for match in _INTERPOLATION.finditer(raw):
        if match["op"] not in (":-", "-"):
            assert match["name"] in env_example(), f"{match['name']} is required: document it"
    services = compose(env_example())["services"]
    for name, service in services.items():
        env = compose_env(service)
        assert set(env) <= ALIASES | set(THIRD_PARTY), (name, set(env) - ALIASES - set(THIRD_PARTY))
    envs = {name: compose_env(services[name]) for name in WORKLOADS}
    for name in WORKLOADS:
        assert REQUIRED[name] <= set(envs[name]), (name, REQUIRED[name] - set(envs[name]))
        config = settings_from(envs[name])
        assert not config.allow_private_networks
        assert urlsplit(config.nats_url).hostname == "nats"
    for name in RUNNERS:
        assert not SECRET_NAMES & set(envs[name]), "runners get no secret and no DATABASE_URL"
        assert envs[name]["FIGRANIUM_TRANSIT_KEY"] == env_example()["FIGRANIUM_TRANSIT_KEY"]
    runner, headful = settings_from(envs["runner"]), settings_from(envs[HEADFUL])
    assert not runner.runner_headful
    assert headful.runner_headful and headful.runner_concurrency == 1
    assert headful.novnc_port == default("novnc_port")
    # Viewer links point at the published port on this host unless .env says otherwise.
    public = urlsplit(str(headful.novnc_public_url))
    assert public.port == headful.novnc_port
    assert env_example()["NOVNC_PUBLIC_URL"] == headful.novnc_public_url
    custom = {**env_example(), "NOVNC_PUBLIC_URL": "https://viewer.example.org"}
    assert compose_env(compose(custom)["services"][HEADFUL])["NOVNC_PUBLIC_URL"] == (
        "https://viewer.example.org"
    )
    for key in ("CHROMIUM_PATH", "RUNNER_DRAIN_SECONDS", "RUN_TIMEOUT_SECONDS", "LOG_FORMAT"):
        assert envs[HEADFUL][key] == envs["runner"][key], key
    assert settings_from(envs["gateway"]).trust_forwarded_for
    for name in ("gateway", "scheduler"):
        database = urlsplit(envs[name]["DATABASE_URL"])
        assert database.hostname == "postgres"
        assert database.password == env_example()["POSTGRES_PASSWORD"]
    assert envs["gateway"]["FIGRANIUM_MASTER_KEY"] == envs["scheduler"]["FIGRANIUM_MASTER_KEY"]
    for name in ("RUN_ACK_WAIT_SECONDS", "RUN_MAX_DELIVER"):
        gateway = settings_from(envs["gateway"])
        field = name.lower()
        for runner_name in RUNNERS:
            value = getattr(settings_from(envs[runner_name]), field)
            assert getattr(gateway, field) == value, (name, runner_name)
    # Secrets are required (compose stops with a message) and the example says how to make them.
    nats_passwords = [f"NATS_{role.upper()}_PASSWORD" for role in natsauth.ROLES]
    required = ("POSTGRES_PASSWORD", "FIGRANIUM_MASTER_KEY", "FIGRANIUM_API_KEY")
    for name in (*required, "FIGRANIUM_TRANSIT_KEY", *nats_passwords):
        assert env_example()[name] == "change-me"
        with pytest.raises(KeyError, match=name):
            compose({k: v for k, v in env_example().items() if k != name})
    assert ENV_EXAMPLE.read_text().count("openssl rand") >= 3


def test_compose_healthchecks_and_drain() -> None:
    services = compose(env_example())["services"]
    for name in WORKLOADS:
        service = services[name]
        check = " ".join(service["healthcheck"]["test"])
        port = compose_env(service)[METRICS_PORT_VARIABLE[name]]
        assert f"http://127.0.0.1:{port}/readyz" in check, name
        assert "/app/.venv/bin/python" in check  # the slim images have no curl
        timeout = re.search(r"timeout=(\d+)", check)
        assert timeout and int(timeout[1]) > probes.READINESS_TIMEOUT_SECONDS
        assert duration_seconds(service["healthcheck"]["timeout"]) > int(timeout[1])
    for name in RUNNERS:
        runner = services[name]
        drain = settings_from(compose_env(runner)).runner_drain_seconds
        assert duration_seconds(runner["stop_grace_period"]) >= drain + 10, name


def test_load_balancer_configuration() -> None:
    conf = re.sub(r"#.*", "", (COMPOSE_DIR / "nginx.conf").read_text())
    config = settings_from(compose_env(compose(env_example())["services"]["gateway"]))
    assert re.search(r"listen\s+11345;", conf)
    assert re.search(r"server\s+gateway:11345\s+resolve;", conf)
    assert re.search(r"resolver\s+127\.0\.0\.11\b", conf)
    assert "proxy_pass http://gateway;" in conf
    assert re.search(r"X-Forwarded-For\s+\$proxy_add_x_forwarded_for;", conf)
    stream = re.search(r"location = /api/executions/stream \{(?P<body>[^}]*)\}", conf)
    assert stream, "the SSE route needs its own location"
    assert "proxy_buffering off;" in stream["body"]
    timeout = re.search(r"proxy_read_timeout\s+(\S+);", stream["body"])
    assert timeout and duration_seconds(timeout[1]) >= 600
    default = re.search(r"location / \{(?P<body>[^}]*)\}", conf)
    assert default
    timeout = re.search(r"proxy_read_timeout\s+(\S+);", default["body"])
    assert timeout and duration_seconds(timeout[1]) > config.run_timeout_seconds
    size = re.search(r"client_max_body_size\s+(\S+);", conf)
    assert size and nginx_size(size[1]) > config.max_body_bytes


# ======================================================================================
# Images
# ======================================================================================


class Instruction(NamedTuple):
    name: str
    value: str


def dockerfile_stages(service: str) -> list[list[Instruction]]:
    path = DEPLOY / "docker" / f"{service}.Dockerfile"
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    stages: list[list[Instruction]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if item["instruction"] != "COMMENT":
            assert stages, "instructions before the first FROM"
            stages[-1].append(Instruction(item["instruction"], item["value"]))
    return stages


def values(stage: list[Instruction], name: str) -> list[str]:
    return [i.value for i in stage if i.name == name]


def _from(stage: list[Instruction]) -> tuple[str, str | None]:
    """A stage's base and its own name: ``FROM base [AS name]``."""
    base, *rest = values(stage, "FROM")[0].split()
    return base, (rest[1] if len(rest) == 2 and rest[0].lower() == "as" else None)


def dockerfile_stage_names(service: str) -> list[str]:
    return [name for stage in dockerfile_stages(service) if (name := _from(stage)[1])]


def image_stage(service: str, target: str | None = None) -> list[Instruction]:
    """What one image is made of: a stage (the last one unless ``target`` names one) after
    the stages it is built ``FROM``, as ``docker build [--target]`` builds it."""
    stages = dockerfile_stages(service)
    index = len(stages) - 1
    if target is not None:
        (index,) = [i for i, stage in enumerate(stages) if _from(stage)[1] == target]
    chain: list[Instruction] = []
    while True:
        chain = stages[index] + chain
        base = _from(stages[index])[0]
        parents = [i for i in range(index) if _from(stages[i])[1] == base]
        if not parents:
            return chain
        index = parents[-1]


def image_pinned(reference: str) -> bool:
    _, tag = kustomize.split_image(reference)
    return bool(tag) and tag != "latest"


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile(service: str) -> None:
    stages = dockerfile_stages(service)
    assert len(stages) >= 2, "multi-stage: a builder and a slim runtime"
    builder, runtime = stages[0], image_stage(service)
    assert values(builder, "FROM")[0].endswith(" AS builder")
    names = dockerfile_stage_names(service)
    for stage in stages:
        base = _from(stage)[0]
        assert base in names or image_pinned(base), base
    copies = [v for stage in stages for v in values(stage, "COPY")]
    for value in copies:
        source = re.match(r"--from=(\S+)", value)
        if source and source[1] != "builder":
            assert image_pinned(source[1]), value

    # The builder installs from the lock file, this service only, in production mode.
    builder_copies = " ".join(values(builder, "COPY"))
    assert "uv.lock" in builder_copies
    syncs = [v for v in values(builder, "RUN") if "uv sync" in v]
    assert syncs
    for run in syncs:
        assert "--frozen" in run and "--no-dev" in run, run
        assert f"--package figranium-{service}" in run, run
    assert "--no-editable" in syncs[-1]
    # uv needs every workspace member's pyproject.toml to read the lock file's workspace.
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    projects = {
        str(p.relative_to(REPO))
        for pattern in members
        for p in REPO.glob(f"{pattern}/pyproject.toml")
    }
    copied = set(builder_copies.split())
    assert projects <= copied, projects - copied

    # The runtime: the venv from the builder, a non-root numeric user, this service's module.
    assert any(v.startswith("--from=builder /app/.venv") for v in values(runtime, "COPY"))
    check_runs_as_non_root(runtime)
    (entrypoint,) = values(runtime, "ENTRYPOINT")
    argv = json.loads(entrypoint)
    assert argv[argv.index("-m") + 1] == f"figranium_{service}"
    assert "/app/.venv/bin/python" in argv
    exposed = {int(p) for v in values(runtime, "EXPOSE") for p in v.split()}
    assert default(METRICS_PORT_VARIABLE[service].lower()) in exposed
    if service == "gateway":
        assert default("port") in exposed

    env_names = {
        name
        for stage in stages
        for value in values(stage, "ENV")
        for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", value)
    }
    unknown = env_names - ALIASES - set(IMAGE_THIRD_PARTY)
    assert not unknown, unknown

    installs = " ".join(values(runtime, "RUN"))
    if service == "runner":
        check_runner_image(runtime)
        # A build without --target is the plain runner, not the headful one.
        for package in HEADFUL_PACKAGES:
            assert not re.search(rf"\b{package}\b", installs), package
        assert "RUNNER_HEADFUL" not in " ".join(values(runtime, "ENV"))
    else:
        text = (DEPLOY / "docker" / f"{service}.Dockerfile").read_text().lower()
        assert "chromium" not in text and "playwright" not in text


HEADFUL_PACKAGES = ("xvfb", "x11vnc", "novnc")


def check_runs_as_non_root(image: list[Instruction]) -> None:
    user = values(image, "USER")[-1]  # the last one is the one the container runs as
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "numeric, so Kubernetes can check runAsNonRoot"


def check_runner_image(image: list[Instruction]) -> None:
    installs = " ".join(values(image, "RUN"))
    packages = ("chromium", "chromium-headless-shell", "ffmpeg", "fonts-liberation")
    for package in (*packages, "fonts-noto-color-emoji"):
        assert re.search(rf"\b{package}\b", installs), package
    assert "fonts-noto-cjk" in installs
    envs = " ".join(values(image, "ENV"))
    assert re.search(r"\bCHROMIUM_PATH=/usr/bin/chromium\b", envs)
    assert re.search(r"\bCHROMIUM_HEADLESS_PATH=/usr/bin/chromium-headless-shell\b", envs)
    assert "ensure-ffmpeg.sh" in installs  # Playwright's ffmpeg path -> Debian's ffmpeg
    (entrypoint,) = values(image, "ENTRYPOINT")
    argv = json.loads(entrypoint)
    assert argv[:2] == ["/usr/bin/tini", "--"]  # reaps Chromium's (and Xvfb's) children
    assert argv[argv.index("-m") + 1] == "figranium_runner"


def test_headful_image() -> None:
    """The runner image's stage "headful": the same build and runtime, plus the display."""
    image = image_stage("runner", "headful")
    assert _from(dockerfile_stages("runner")[0])[1] == "builder"
    # Built on the runner stage, so one builder and one Chromium setup serve both images.
    (headful,) = [s for s in dockerfile_stages("runner") if _from(s)[1] == "headful"]
    assert _from(headful)[0] == "runner"
    check_runner_image(image)
    check_runs_as_non_root(image)
    installs = " ".join(values(headful, "RUN"))
    for package in (*HEADFUL_PACKAGES, "websockify"):
        assert re.search(rf"\b{package}\b", installs), package
    assert "--no-install-recommends" in installs
    assert "rm -rf /var/lib/apt/lists" in installs
    env = dict(
        re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(\S+)", " ".join(values(image, "ENV")))
    )
    config = settings_from({k: v for k, v in env.items() if k in ALIASES})
    assert config.runner_headful
    assert config.novnc_port == default("novnc_port")
    assert config.novnc_web_dir == default("novnc_web_dir")  # where Debian's novnc puts it
    exposed = {int(p) for v in values(image, "EXPOSE") for p in v.split()}
    assert {config.novnc_port, default("runner_metrics_port")} <= exposed
    # What compose and the Kubernetes base run: this stage, as figranium-runner-headful.
    objects = list(_rendered("base"))
    name, _ = kustomize.split_image(main_container(objects, HEADFUL)["image"])
    assert name == "figranium-runner-headful"


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_images_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".venv", ".data", ".git", "tests", "__pycache__/x.pyc", ".pytest_cache"):
        assert _dockerignored(excluded, patterns), excluded
    for service in SERVICES:
        for stage in dockerfile_stages(service):
            for value in values(stage, "COPY"):
                if value.startswith("--from="):
                    continue
                *sources, _ = value.split()
                for source in sources:
                    assert (REPO / source).exists(), source
                    assert not _dockerignored(source, patterns), source


# --------------------------------------------------------------------------------------
# Each image installs only its service's dependencies (`uv sync --package`): every module
# the service imports at run time must come from that closure, not from the dev group.
# --------------------------------------------------------------------------------------

STDLIB = frozenset(sys.stdlib_module_names)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_closure(package: str) -> set[str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    packages = {_normalise(p["name"]): p for p in lock["package"]}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    pending: list[tuple[str, tuple[str, ...]]] = [(_normalise(package), ())]
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        entry = packages[name]
        dependencies = list(entry.get("dependencies", []))
        for extra in extras:
            dependencies += entry.get("optional-dependencies", {}).get(extra, [])
        for dependency in dependencies:
            pending.append((_normalise(dependency["name"]), tuple(dependency.get("extra", []))))
    return {name for name, _ in seen}


def _guarded(node: ast.AST) -> bool:
    """An ``if TYPE_CHECKING:`` block or a ``try`` that handles ImportError."""
    if isinstance(node, ast.If):
        test = node.test
        return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
    if isinstance(node, ast.Try):
        for handler in node.handlers:
            names = handler.type
            text = ast.unparse(names) if names else ""
            if "ImportError" in text or "ModuleNotFoundError" in text:
                return True
    return False


def _imports(path: Path) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _guarded(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def _module_file(module: str) -> Path | None:
    top = module.split(".")[0]
    roots = {
        "figranium_common": REPO / "libs" / "common",
        **{f"figranium_{s}": REPO / "services" / s for s in SERVICES},
    }
    if top not in roots:
        return None
    base = roots[top].joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def runtime_imports(service: str) -> set[str]:
    """Top-level third-party modules the service (and the common modules it uses) import."""
    package = REPO / "services" / service / f"figranium_{service}"
    pending = [p for p in package.rglob("*.py")]
    seen: set[Path] = set()
    third_party: set[str] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            top = module.split(".")[0]
            if top.startswith("figranium_"):
                assert top in ("figranium_common", f"figranium_{service}"), (path, module)
                target = _module_file(module)
                if target is not None:
                    pending.append(target)
                # A package's __init__ runs first.
                parent = _module_file(".".join(module.split(".")[:-1]) or top)
                if parent is not None:
                    pending.append(parent)
            elif top not in STDLIB and top != "__future__":
                third_party.add(top)
    return third_party


@pytest.mark.parametrize(
    "service",
    ["gateway", "runner", "scheduler"],
)
def test_image_installs_everything_the_service_imports(service: str) -> None:
    closure = lock_closure(f"figranium-{service}")
    providers = metadata.packages_distributions()
    missing = {}
    for module in sorted(runtime_imports(service)):
        distributions = {_normalise(d) for d in providers.get(module, [])}
        assert distributions, f"{module}: no installed distribution provides it"
        if not distributions & closure:
            missing[module] = sorted(distributions)
    assert not missing, (
        f"figranium-{service} imports modules its image would not have "
        f"(add them to services/{service}/pyproject.toml and `uv lock`): {missing}"
    )


def test_runner_image_has_no_database_driver() -> None:
    closure = lock_closure("figranium-runner")
    assert not {"psycopg", "psycopg-binary", "psycopg-pool"} & closure


# ======================================================================================
# NATS users: compose's nats.conf and the Kubernetes NATS values
# ======================================================================================


def test_compose_nats_users_are_the_devstack_users() -> None:
    """The same users and subjects as `make run`'s server, passwords from .env; each
    service connects as its own user with its own password."""
    text = (COMPOSE_DIR / "nats.conf").read_text()
    assert text == natsauth.compose_config(), "run python -m figranium_devstack.natsauth"
    services = compose(env_example())["services"]
    raw = compose()["services"]
    for role in natsauth.ROLES:
        assert (
            f"${{{natsauth.password_variable(role)}:?"
            in raw["nats"]["environment"][natsauth.password_variable(role)]
        )
    for name in WORKLOADS:
        env = compose_env(services[name])
        assert env["NATS_USER"] == NATS_ROLE[name], name
        variable = natsauth.password_variable(NATS_ROLE[name])
        assert raw[name]["environment"]["NATS_PASSWORD"].startswith(f"${{{variable}:?"), name


def test_kubernetes_nats_users_are_the_devstack_users(objects: list[Obj]) -> None:
    text = (K8S / "nats-values.yaml").read_text()
    assert text == natsauth.kubernetes_values(), "run python -m figranium_devstack.natsauth"
    values = yaml.safe_load(text)
    users = values["config"]["merge"]["authorization"]["users"]
    assert [u["user"] for u in users] == list(natsauth.ROLES)
    for user in users:
        role = user["user"]
        assert user["permissions"] == natsauth.PERMISSIONS[role], role
        assert user["password"] == f"<< ${natsauth.password_variable(role)} >>"
        ref = values["container"]["env"][natsauth.password_variable(role)]["valueFrom"][
            "secretKeyRef"
        ]
        assert ref == {"name": "figranium-nats", "key": natsauth.password_variable(role)}
    assert values["service"]["ports"]["monitor"]["enabled"]  # KEDA reads the backlog there
    for name in WORKLOADS:
        env = service_env(objects, name)
        assert env["NATS_USER"] == NATS_ROLE[name], name
        password = SecretRef("figranium-nats", natsauth.password_variable(NATS_ROLE[name]))
        assert env["NATS_PASSWORD"] == password, name
    assert "nats-values.yaml" in (DEPLOY / "README.md").read_text()


def test_nats_replicas_match_each_deployments_nats(objects: list[Obj]) -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    nodes = values["config"]["cluster"]["replicas"]
    assert values["config"]["cluster"]["enabled"] and nodes == 3
    configmap = next(o for o in objects if o["kind"] == "ConfigMap")
    assert configmap["data"]["NATS_REPLICAS"] == str(nodes)
    gateway = compose(env_example())["services"]["gateway"]
    assert settings_from(compose_env(gateway)).nats_replicas == 1  # one nats service
    clustered = compose({**env_example(), "NATS_REPLICAS": "3"})["services"]["gateway"]
    assert settings_from(compose_env(clustered)).nats_replicas == 3
