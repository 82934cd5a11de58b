"""The Helm chart renders, lints and validates offline, in every supported combination.

`helm template` renders the chart for the minimal, production-with-KEDA, HPA, external-NATS
and NATS-subchart combinations; every manifest is validated against the Kubernetes API
schemas of two current versions (kubernetes-validate, strict: unknown fields fail) and the
KEDA and Prometheus Operator resources against their CRDs' schemas (tests/data/crds). The
rules the issue sets (hardened security contexts, probes, replicas, drain, the NATS users
from the contracts) are asserted on what renders, not on the templates' text.
"""

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from core_voice_cli.binaries import find_binary, repo_root
from core_voice_cli.chart_files import chart_dir, main, nats_permissions
from core_voice_contracts.permissions import Role, grants

pytestmark = pytest.mark.unit

CHART = chart_dir()
CRDS = Path(__file__).parent.parent / "data" / "crds"
KUBE_VERSIONS = ("1.36.0", "1.37.0")
"""The two newest Kubernetes versions kubernetes-validate ships schemas for."""

COMBINATIONS: dict[str, list[str]] = {
    "minimal": ["--set", "autoscaling.mode=none"],
    "production-keda": [
        "-f", str(CHART / "values-large.yaml"),
        "--set", "serviceMonitor.enabled=true",
        "--set", "prometheusRule.enabled=true",
        "--set", "livekit.webhookBaseUrl=https://voice.example.com",
        "--set", "worker.image.digest=sha256:" + "a" * 64,
    ],
    "hpa": ["-f", str(CHART / "values-medium.yaml"), "--set", "autoscaling.mode=hpa"],
    "external-nats": [
        "-f", str(CHART / "values-small.yaml"),
        "--set", "externalNats.url=tls://nats.messaging.svc:4222",
        "--set", "externalNats.streamReplicas=3",
        "--set", "externalNats.tls.caSecret=nats-ca",
    ],
    "nats-subchart": ["-f", str(CHART / "values-medium.yaml"), "--set", "nats.enabled=true"],
}  # fmt: skip

CRD_FILES = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_binary("helm")), *args], capture_output=True, text=True, timeout=60, check=False
    )


@cache
def render(combination: str) -> tuple[dict[str, Any], ...]:
    out = helm("template", "cv", str(CHART), "--namespace", "voice", *COMBINATIONS[combination])
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def ours(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """This chart's resources (not the NATS subchart's)."""
    return [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "core-voice"
    ]


def kinds(docs: tuple[dict[str, Any], ...]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        found.setdefault(doc["kind"], []).append(doc)
    return found


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            specs.append((doc["metadata"]["name"], doc["spec"]))
    return specs


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / CRD_FILES[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema: dict[str, Any] = _python_patterns(version["schema"]["openAPIV3Schema"])
    return schema


def _python_patterns(node: Any) -> Any:
    """Go's inline flags mid-pattern (``^(?i)...``) are an error in Python's re: drop those
    few patterns (the Prometheus Operator's partial_response_strategy), keep the rest."""
    if isinstance(node, dict):
        return {
            key: _python_patterns(value)
            for key, value in node.items()
            if not (key == "pattern" and isinstance(value, str) and "(?i)" in value)
        }
    if isinstance(node, list):
        return [_python_patterns(value) for value in node]
    return node


def test_chart_files_are_current() -> None:
    assert main(["--check"]) == 0, "run: uv run python -m core_voice_cli.chart_files"


def test_lint_every_values_file() -> None:
    for values in ("values.yaml", "values-small.yaml", "values-medium.yaml", "values-large.yaml"):
        out = helm("lint", "--strict", str(CHART), "-f", str(CHART / values))
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_manifests_validate_against_kubernetes_schemas(combination: str) -> None:
    docs = render(combination)
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_FILES:
            jsonschema.validate(doc, crd_schema(doc["kind"]))
            checked += 1
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked == len(docs) > 10


def test_every_workload_is_hardened() -> None:
    for combination in COMBINATIONS:
        specs = pod_specs(ours(render(combination)))
        assert len(specs) >= 5, combination  # four services, the migration Job, the test pod
        for name, spec in specs:
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
            assert spec["automountServiceAccountToken"] is False, name
            for container in spec["containers"]:
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, name
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["runAsNonRoot"] is True, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
                assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
                assert container["resources"]["requests"], name


def _deployment(docs: tuple[dict[str, Any], ...], component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def test_probes_replicas_and_drain() -> None:
    docs = render("production-keda")
    probes = {
        "config-sync": (8081, "/healthz", "/healthz"),
        "dispatcher": (8082, "/healthz", "/healthz"),
        "telemetry": (9464, "/healthz", "/healthz"),
        "worker": (8083, "/healthz", "/readyz"),
    }
    for component, (port, live, ready) in probes.items():
        deployment = _deployment(docs, component)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["ports"][0]["containerPort"] == port
        assert container["livenessProbe"]["httpGet"]["path"] == live
        assert container["readinessProbe"]["httpGet"]["path"] == ready
        assert "checksum/config" in deployment["spec"]["template"]["metadata"]["annotations"]
    for component in ("config-sync", "dispatcher"):
        assert _deployment(docs, component)["spec"]["replicas"] >= 2
    worker = _deployment(docs, "worker")
    assert "replicas" not in worker["spec"]  # KEDA owns it
    spec = worker["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= 1800
    assert spec["containers"][0]["lifecycle"]["preStop"]
    assert spec["containers"][0]["image"].endswith("@sha256:" + "a" * 64)
    env = kinds(docs)["ConfigMap"]
    (worker_env,) = [c for c in env if c["metadata"]["name"].endswith("-worker-env")]
    drain = int(worker_env["data"]["WORKER_DRAIN_TIMEOUT_S"])
    assert spec["terminationGracePeriodSeconds"] > drain >= 1800


def test_workers_scale_on_calls() -> None:
    (scaled,) = kinds(render("production-keda"))["ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "corevoice_worker_active_calls" in trigger["metadata"]["query"]
    assert "corevoice_worker_capacity" in trigger["metadata"]["query"]
    (hpa,) = kinds(render("hpa"))["HorizontalPodAutoscaler"]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "corevoice_worker_utilisation"
    assert "HorizontalPodAutoscaler" not in kinds(render("production-keda"))
    assert "ScaledObject" not in kinds(render("minimal"))
    assert {p["metadata"]["name"] for p in kinds(render("minimal"))["PodDisruptionBudget"]} == {
        "cv-core-voice-config-sync",
        "cv-core-voice-dispatcher",
        "cv-core-voice-worker",
    }


def test_monitoring_resources() -> None:
    found = kinds(render("production-keda"))
    (rule,) = found["PrometheusRule"]
    alerts = yaml.safe_load((repo_root() / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"] == alerts
    assert len(found["ServiceMonitor"]) == 1
    dashboards = [c for c in found["ConfigMap"] if c["metadata"]["labels"].get("grafana_dashboard")]
    assert len(dashboards) == len(list((CHART / "files" / "dashboards").glob("*.json"))) >= 4
    assert all(c["metadata"]["labels"]["grafana_dashboard"] == "1" for c in dashboards)
    assert "ServiceMonitor" not in kinds(render("minimal"))


def test_network_policies_cover_every_service() -> None:
    policies = kinds(render("nats-subchart"))["NetworkPolicy"]
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in policies}
    assert components == {
        *("config-sync", "dispatcher", "worker", "telemetry", "nats"),
        *("migrate", "test"),  # the hook pods: no ingress at all, egress to one service
    }
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
    # Every pod the chart runs is selected by one of them (none is left wide open).
    selected = [p["spec"]["podSelector"]["matchLabels"] for p in policies]
    for name, _ in pod_specs(list(render("nats-subchart"))):
        doc = next(d for d in render("nats-subchart") if d["metadata"]["name"] == name)
        labels = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
        labels = labels or doc["metadata"]["labels"]
        assert any(sel.items() <= labels.items() for sel in selected), name


def test_nats_users_come_from_the_contracts() -> None:
    assert json.loads(nats_permissions()) == {
        role.value: grant.server_config() for role, grant in grants().items()
    }
    docs = render("external-nats")
    (auth,) = [
        d for d in kinds(docs)["ConfigMap"] if d["metadata"]["name"] == "core-voice-nats-auth"
    ]
    conf = auth["data"]["auth.conf"]
    for role in Role:
        assert f'user: "{role.value}"' in conf
        assert f"password: $NATS_PASSWORD_{role.value.upper()}" in conf
    for name, spec in pod_specs(ours(docs)):
        for container in spec["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            if "NATS_PASSWORD" in env:
                assert env["NATS_URL"]["value"] == "tls://nats.messaging.svc:4222", name
                assert "secretKeyRef" in env["NATS_PASSWORD"]["valueFrom"], name
                # TLS: the CA from its Secret, mounted read-only where NATS_CA points.
                assert env["NATS_CA"]["value"] == "/etc/core-voice/nats-ca/ca.crt", name
                mounts = {m["name"]: m for m in container["volumeMounts"]}
                assert mounts["nats-ca"]["mountPath"] == "/etc/core-voice/nats-ca", name
                volumes = {v["name"]: v for v in spec["volumes"]}
                assert volumes["nats-ca"]["secret"]["secretName"] == "nats-ca", name


def _stream_replicas(docs: tuple[dict[str, Any], ...]) -> set[str]:
    """NATS_STREAM_REPLICAS of every container that logs in to NATS."""
    found = set()
    for _, spec in pod_specs(ours(docs)):
        for container in spec["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            if "NATS_PASSWORD" in env and "NATS_STREAM_REPLICAS" in env:
                found.add(env["NATS_STREAM_REPLICAS"]["value"])
            elif "NATS_PASSWORD" in env and container["name"] != "nats-request":
                found.add("missing")
    return found


def test_streams_run_at_r3_on_a_cluster_and_r1_on_one_server() -> None:
    assert _stream_replicas(render("nats-subchart")) == {"3"}
    assert _stream_replicas(render("external-nats")) == {"3"}  # externalNats.streamReplicas
    assert _stream_replicas(render("minimal")) == {"1"}
    for _, spec in pod_specs(ours(render("minimal"))):  # no CA Secret: nothing mounted
        assert "nats-ca" not in {v["name"] for v in spec.get("volumes", [])}


def test_subchart_runs_jetstream_cluster_with_the_users() -> None:
    docs = render("nats-subchart")
    (nats,) = kinds(docs)["StatefulSet"]
    assert nats["spec"]["replicas"] == 3
    (config,) = [d for d in kinds(docs)["ConfigMap"] if d["metadata"]["name"] == "cv-nats-config"]
    assert "jetstream" in config["data"]["nats.conf"]
    assert "include ../nats-core-voice/auth.conf" in config["data"]["nats.conf"]
    volumes = {v["name"] for v in nats["spec"]["template"]["spec"]["volumes"]}
    assert "core-voice-auth" in volumes
    (container,) = [
        c for c in nats["spec"]["template"]["spec"]["containers"] if c["name"] == "nats"
    ]
    env = {e["name"] for e in container["env"]}
    assert {f"NATS_PASSWORD_{r.value.upper()}" for r in Role} <= env


def test_values_schema_refuses_unsafe_values() -> None:
    for bad in (
        "dispatcher.replicas=1",
        "configSync.replicas=1",
        "worker.drainTimeoutSeconds=60",
        "autoscaling.mode=cpu",
        "externalNats.streamReplicas=0",
        "externalNats.streamReplicas=7",
    ):
        out = helm("template", "cv", str(CHART), "--set", bad)
        assert out.returncode != 0, bad


def test_notes_print_the_webhook_url() -> None:
    out = helm(
        "install", "cv", str(CHART), "--dry-run=client", "--namespace", "voice",
        "--set", "livekit.webhookBaseUrl=https://voice.example.com/",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "https://voice.example.com/webhook/livekit" in out.stdout
