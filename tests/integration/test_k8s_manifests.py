"""The Kubernetes manifests (deploy/k8s): every overlay renders with ``kubectl kustomize``, its
objects validate against the Kubernetes schemas offline (kubernetes-validate, strict: unknown
fields fail), and the invariants that keep a rollout lossless hold (probes, drain arithmetic,
resources, security context, HPA/PDB/Service wiring, scrape config).

Needs ``kubectl`` (Debian's kubernetes-client, or any other; ``KUBECTL`` names another binary).
Without it the test skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from product_classifier.serving.settings import ENV_PREFIX, ServeSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production", "prometheus-operator")
# The oldest schemas kubernetes-validate ships in strict form, and its newest: the manifests
# use nothing newer than autoscaling/v2 and policy/v1.
K8S_VERSIONS = ("1.25.0", "latest")
# Seconds the service needs after the drain window to finish requests in flight and exit.
MIN_MARGIN_S = 5
LOADTEST_EVIDENCE = ROOT / "docs" / "evidence" / "loadtest.json"
# Groups whose schemas kubernetes-validate has; anything else is a CRD, checked by hand below.
BUILTIN_API = re.compile(r"^(v1|apps/v1|autoscaling/v2|policy/v1)$")

Doc = dict[str, Any]


def _tool_missing(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _kubectl() -> str:
    name = os.environ.get("KUBECTL", "kubectl")
    path = shutil.which(name)
    if path is None:
        _tool_missing(f"{name} is not installed (apt-get install kubernetes-client)")
    assert path is not None
    return path


@cache
def render(overlay: str) -> tuple[Doc, ...]:
    """``kubectl kustomize`` output of deploy/k8s/overlays/OVERLAY (or base) as objects."""
    where = K8S / ("base" if overlay == "base" else f"overlays/{overlay}")
    proc = subprocess.run(
        [_kubectl(), "kustomize", str(where)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"kubectl kustomize {where}: {proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def one(docs: tuple[Doc, ...] | list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``320Mi``, ``1G``) as a plain number."""
    text = str(value)
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


def subset(labels: dict[str, str], of: dict[str, str]) -> bool:
    return all(of.get(key) == value for key, value in labels.items())


def image_uid() -> int:
    """The numeric USER of the serving image (the last USER in docker/Dockerfile)."""
    users = re.findall(r"^USER\s+(\d+)", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    return int(users[-1])


def problems(docs: tuple[Doc, ...] | list[Doc]) -> list[str]:
    """Every broken invariant in one rendered overlay, as sentences (empty: all good)."""
    found: list[str] = []
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}

    if not subset(deployment["spec"]["selector"]["matchLabels"], pod_labels):
        found.append("the Deployment's selector does not match its pods")
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            found.append(f"{probe} is not an HTTP GET on {path}")
        if get.get("port") not in ports and get.get("port") not in ports.values():
            found.append(f"{probe} port {get.get('port')!r} is not a container port")

    # The drain arithmetic (deployment.yaml's comment): preStop + drain + margin <= grace.
    config = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        config.update(
            next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)[
                "data"
            ]
        )
    unknown = [key for key in config if key.removeprefix(ENV_PREFIX).lower() not in _fields()]
    if unknown:
        found.append(f"ConfigMap keys that are no service setting: {unknown}")
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if not command or command[0] != "sleep":
        found.append("no preStop `sleep`: the pod would stop before its endpoints are gone")
        pre_stop = 0.0
    else:
        pre_stop = float(command[1])
    drain = float(config.get(f"{ENV_PREFIX}DRAIN_S", 0))
    if drain <= 0:
        found.append(f"{ENV_PREFIX}DRAIN_S is not set in the ConfigMap")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace < pre_stop + drain + MIN_MARGIN_S:
        found.append(
            f"terminationGracePeriodSeconds {grace} < preStop {pre_stop:g} + drain {drain:g} "
            f"+ {MIN_MARGIN_S} s margin"
        )

    resources = container.get("resources", {})
    for kind in ("cpu", "memory"):
        request = resources.get("requests", {}).get(kind)
        limit = resources.get("limits", {}).get(kind)
        if request is None or limit is None:
            found.append(f"{kind}: no request or no limit")
        elif quantity(limit) < quantity(request):
            found.append(f"{kind}: limit {limit} < request {request}")
    # The memory request covers the footprint `make loadtest` measured for 2 workers (its
    # evidence JSON), so the scheduler never packs a pod where it cannot run.
    measured_mb = json.loads(LOADTEST_EVIDENCE.read_text())["tuned"]["peak_rss_mb"]
    memory_request = resources.get("requests", {}).get("memory")
    if memory_request is not None and quantity(memory_request) < measured_mb * 1e6:
        found.append(
            f"memory: request {memory_request} < the measured peak RSS {measured_mb:.0f} MB "
            "(docs/evidence/loadtest.json)"
        )
    workers = int(config.get(f"{ENV_PREFIX}WORKERS", 0))
    cpu_limit = resources.get("limits", {}).get("cpu")
    if not workers or (cpu_limit is not None and workers > quantity(cpu_limit)):
        found.append(f"{ENV_PREFIX}WORKERS={workers}: set it, at most one per CPU of the limit")

    pod_security = spec.get("securityContext", {})
    security = container.get("securityContext", {})
    if pod_security.get("runAsNonRoot") is not True:
        found.append("runAsNonRoot is not true")
    if pod_security.get("runAsUser") != image_uid():
        found.append(f"runAsUser {pod_security.get('runAsUser')} is not the image's {image_uid()}")
    if security.get("readOnlyRootFilesystem") is not True:
        found.append("readOnlyRootFilesystem is not true")
    if security.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation is not false")
    if "ALL" not in security.get("capabilities", {}).get("drop", []):
        found.append("capabilities are not all dropped")
    # The one path the service writes (HOME, multiprocess metrics) must be a volume.
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
        found.append("/tmp is not an emptyDir: the read-only root fs leaves nowhere to write")

    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    target = hpa["scaleTargetRef"]
    if (target["apiVersion"], target["kind"], target["name"]) != (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    ):
        found.append(f"the HPA scales {target}, not the Deployment")
    if not 1 <= hpa.get("minReplicas", 1) <= hpa["maxReplicas"]:
        found.append("HPA replicas: want 1 <= min <= max")
    if not any(m.get("resource", {}).get("name") == "cpu" for m in hpa.get("metrics", [])):
        found.append("the HPA does not scale on CPU")
    if "cpu" not in resources.get("requests", {}):
        found.append("the HPA's CPU utilisation needs a CPU request")

    pdb = one(docs, "PodDisruptionBudget")["spec"]
    if not subset(pdb["selector"]["matchLabels"], pod_labels):
        found.append("the PodDisruptionBudget's selector does not match the pods")
    if deployment["spec"].get("replicas", 1) < 2 and "minAvailable" in pdb:
        found.append("minAvailable with one replica blocks every node drain")

    service = one(docs, "Service")
    if not subset(service["spec"]["selector"], pod_labels):
        found.append("the Service's selector does not match the pods")
    for port in service["spec"]["ports"]:
        if port["targetPort"] not in ports and port["targetPort"] not in ports.values():
            found.append(f"Service targetPort {port['targetPort']!r} is not a container port")

    # Scraping: pod annotations, or a ServiceMonitor on the Service's port.
    annotations = pod["metadata"].get("annotations", {})
    monitors = [doc for doc in docs if doc["kind"] == "ServiceMonitor"]
    if annotations.get("prometheus.io/scrape") == "true":
        if int(annotations.get("prometheus.io/port", 0)) not in ports.values():
            found.append("prometheus.io/port is not a container port")
        if annotations.get("prometheus.io/path") != "/metrics":
            found.append("prometheus.io/path is not /metrics")
    elif not monitors:
        found.append("nothing scrapes /metrics (no annotations, no ServiceMonitor)")
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    for monitor in monitors:
        if not subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]):
            found.append("the ServiceMonitor does not select the Service")
        if monitor["metadata"].get("namespace") != service["metadata"].get("namespace"):
            found.append("the ServiceMonitor is not in the Service's namespace")
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint.get("port") not in service_ports or endpoint.get("path") != "/metrics":
                found.append(f"ServiceMonitor endpoint {endpoint} is not the Service's /metrics")

    namespaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"}
    if len(namespaces) != 1:
        found.append(f"objects spread over namespaces {namespaces}")
    return found


@cache
def _fields() -> frozenset[str]:
    return frozenset(ServeSettings.model_fields)


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        _tool_missing("kubernetes-validate is not installed (requirements/dev.txt)")
    return kubernetes_validate


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_overlay_renders_and_validates_against_the_schemas(
    overlay: str, kubernetes_validate: Any
) -> None:
    docs = render(overlay)
    kinds = sorted(doc["kind"] for doc in docs)
    for kind in ("ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Service"):
        assert kind in kinds, f"{overlay}: no {kind} in {kinds}"
    for version in K8S_VERSIONS:
        wanted = kubernetes_validate.latest_version() if version == "latest" else version
        for doc in docs:
            if not BUILTIN_API.match(doc["apiVersion"]):
                assert doc["kind"] == "ServiceMonitor", f"unexpected custom resource {doc['kind']}"
                continue
            kubernetes_validate.validate(doc, wanted, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_keeps_the_rollout_invariants(overlay: str) -> None:
    assert problems(render(overlay)) == []


def test_overlays_differ_where_they_should() -> None:
    dev, production = render("dev"), render("production")
    assert one(dev, "Deployment")["metadata"]["namespace"] == "product-classifier-dev"
    assert one(production, "Deployment")["metadata"]["namespace"] == "product-classifier"
    assert one(dev, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 1
    assert one(production, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 3
    assert any(doc["kind"] == "ServiceMonitor" for doc in render("prometheus-operator"))


def test_the_checks_can_fail(kubernetes_validate: Any) -> None:
    """A broken copy of production trips the schema and the invariants it breaks."""
    docs = [copy.deepcopy(doc) for doc in render("production")]
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    container["readinessProbe"]["httpGet"]["path"] = "/health"
    container["resources"]["limits"]["memory"] = "100Mi"
    container["resources"]["requests"]["memory"] = "128Mi"
    container["securityContext"]["readOnlyRootFilesystem"] = False
    spec["terminationGracePeriodSeconds"] = 10
    one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] = "other"
    one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] = {"app": "other"}
    found = "\n".join(problems(docs))
    for expected in (
        "readinessProbe is not an HTTP GET on /ready",
        "memory: limit 100Mi < request",
        "memory: request 128Mi < the measured peak RSS",
        "readOnlyRootFilesystem",
        "terminationGracePeriodSeconds 10 <",
        "the HPA scales",
        "PodDisruptionBudget's selector",
    ):
        assert expected in found
    container["livenessProbe"]["httpGett"] = container["livenessProbe"].pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
