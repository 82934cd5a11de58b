"""`helm install`, `upgrade` and `uninstall` of the chart against a real kube-apiserver.

The unit tests validate what `helm template` renders against offline schemas; here the API
server of the Kubernetes release the chart targets decides, with etcd behind it: built-in
validation beyond the schemas (a selector must match its template's labels, immutable
fields on upgrade), the KEDA and Prometheus Operator CRDs' schemas with their CEL rules,
admission. Helm 4 applies server-side with Strict field validation, so an unknown field
anywhere fails the install.

No kubelet, scheduler or controller-manager runs (tests/harness/kube.py), so no pod ever
starts. That shapes three things, each said where it happens:

- `helm install` / `upgrade` run with ``--no-hooks`` and without ``--wait``: the
  pre-install/pre-upgrade migration Job would never complete, and helm waits for hooks.
  The hook Job and the `helm test` pod are created separately, from ``helm template
  --show-only``, to show the API server accepts them too.
- Namespaces are never deleted (the namespace controller is what empties and removes
  them); "uninstall leaves nothing behind" is checked by listing every kind in the
  namespace.
- The ``default`` ServiceAccount, which the controller-manager creates in each namespace,
  is created by the test before it creates a Pod (admission requires it).

The first test pays for building kube-apiserver and etcd (scripts/kube_binaries.sh, about
15 minutes on 2 cores) if this machine has none cached; run the script beforehand to keep
that out of the tests. Hence the module's longer timeout; every helm call, API call and
wait has its own bound.
"""

import copy
import subprocess
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from core_voice_cli.binaries import find_binary
from tests.harness.kube import BUILD_TIMEOUT_S, ApiError, KubeApiServer, running_kube
from tests.unit.test_helm_chart import CHART, COMBINATIONS, CRD_FILES, CRDS, crd_schema

pytestmark = [pytest.mark.kube, pytest.mark.timeout(BUILD_TIMEOUT_S + 300)]

INSTALLED = ("production-keda", "nats-subchart")
"""The combinations installed: the one with every optional resource (KEDA, monitoring) and
the one with the NATS subchart (StatefulSet, its own Services and ConfigMaps)."""
HELM_TIMEOUT_S = 120
HOOK_JOB = "templates/migrate-job.yaml"
TEST_POD = "templates/tests/test-nats-request.yaml"

Json = dict[str, Any]


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    with running_kube(tmp_path_factory.mktemp("kube")) as server:
        for crd in CRD_FILES.values():
            server.api.create(yaml.safe_load((CRDS / crd).read_text()))
        for crd in CRD_FILES.values():
            name = yaml.safe_load((CRDS / crd).read_text())["metadata"]["name"]
            server.api.wait_for(_established(server, name), f"CRD {name} established")
        yield server


def _established(kube: KubeApiServer, name: str) -> Callable[[], bool]:
    def check() -> bool:
        crd = kube.api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = crd.get("status", {}).get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    return check


def helm(kube: KubeApiServer, *args: str) -> str:
    out = subprocess.run(
        [str(find_binary("helm")), "--kubeconfig", str(kube.kubeconfig()), *args],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_S,
        check=False,
    )
    assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}{out.stderr}"
    return out.stdout


def docs(text: str) -> list[Json]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@cache
def rendered(combination: str, namespace: str, *show_only: str) -> tuple[Json, ...]:
    out = subprocess.run(
        [str(find_binary("helm")), "template", "cv", str(CHART), "--namespace", namespace]
        + [arg for template in show_only for arg in ("--show-only", template)]
        + COMBINATIONS[combination],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_S,
        check=True,
    )
    return tuple(docs(out.stdout))


def secrets_referenced(objects: tuple[Json, ...]) -> dict[str, set[str]]:
    """Secret name -> keys, for every secretKeyRef / secretRef / secret volume rendered."""
    found: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                found.setdefault(ref["name"], set()).add(ref["key"])
            for key in ("secretRef", "secret"):
                named = node.get(key)
                if isinstance(named, dict) and ("name" in named or "secretName" in named):
                    found.setdefault(named.get("name") or named["secretName"], set())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(list(objects))
    return found


def new_namespace(kube: KubeApiServer, combination: str) -> tuple[str, set[tuple[str, str]]]:
    """A fresh namespace holding the Secrets the chart expects to exist (the chart creates
    none: values.yaml `secrets.*.existingSecret`); what it holds before helm runs."""
    namespace = f"cv-{combination}-{uuid.uuid4().hex[:6]}"
    kube.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for name, keys in secrets_referenced(rendered(combination, namespace)).items():
        kube.api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {key: f"test-{uuid.uuid4().hex}" for key in sorted(keys)},
            },
            namespace,
        )
    return namespace, kube.api.namespace_contents(namespace)


def checksums(kube: KubeApiServer, namespace: str) -> dict[str, str]:
    items = kube.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for d in items
    }


@pytest.mark.parametrize("combination", INSTALLED)
def test_install_upgrade_uninstall(kube: KubeApiServer, combination: str) -> None:
    namespace, before = new_namespace(kube, combination)
    chart = [str(CHART), "--namespace", namespace, *COMBINATIONS[combination]]

    # No hooks (the migration Job never completes without a kubelet), no --wait.
    helm(kube, "install", "cv", *chart, "--no-hooks")
    status = yaml.safe_load(helm(kube, "status", "cv", "--namespace", namespace, "-o", "yaml"))
    assert status["info"]["status"] == "deployed"
    manifest = docs(helm(kube, "get", "manifest", "cv", "--namespace", namespace))
    expected = {(d["kind"], d["metadata"]["name"]) for d in rendered(combination, namespace)}
    hooks = {
        (d["kind"], d["metadata"]["name"])
        for d in rendered(combination, namespace)
        if "helm.sh/hook" in d["metadata"].get("annotations", {})
    }
    assert {kind for kind, _ in hooks} == {"Job", "Pod"}  # HOOK_JOB and TEST_POD
    assert {(d["kind"], d["metadata"]["name"]) for d in manifest} == expected - hooks
    assert len(manifest) > 10
    for doc in manifest:
        stored = kube.api.read(doc, namespace)
        assert stored["metadata"]["labels"] == doc["metadata"].get("labels", {}), doc["kind"]
        managers = {entry["manager"] for entry in stored["metadata"]["managedFields"]}
        assert "helm" in managers, (doc["kind"], managers)  # applied server-side by helm
    assert kube.api.namespace_contents(namespace) >= before | expected - hooks

    # A changed value in a service's environment: new config checksum on every Deployment.
    old = checksums(kube, namespace)
    assert len(old) == 4
    helm(kube, "upgrade", "cv", *chart, "--no-hooks", "--set", "global.logLevel=WARNING")
    status = yaml.safe_load(helm(kube, "status", "cv", "--namespace", namespace, "-o", "yaml"))
    assert (status["info"]["status"], status["version"]) == ("deployed", 2)
    new = checksums(kube, namespace)
    assert new.keys() == old.keys()
    assert all(new[name] != old[name] for name in old), (old, new)
    (config_sync,) = [
        kube.api.read(d, namespace)
        for d in manifest
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config-sync-env")
    ]
    assert config_sync["data"]["CONFIG_SYNC_LOG_LEVEL"] == "WARNING"

    helm(kube, "uninstall", "cv", "--namespace", namespace)
    assert kube.api.namespace_contents(namespace) == before


def test_hook_job_and_test_pod_are_accepted(kube: KubeApiServer) -> None:
    """What `--no-hooks` left out of the install: the migration Job (pre-install,
    pre-upgrade) and the `helm test` pod, created as helm would create them. They are
    stored, and stay so: nothing schedules the pod or runs the Job."""
    namespace, _ = new_namespace(kube, "production-keda")
    # The controller-manager would have made it; Pod admission refuses a pod without it.
    default_sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
    kube.api.create(default_sa, namespace)
    objects = rendered("production-keda", namespace, HOOK_JOB, TEST_POD)
    assert sorted(d["kind"] for d in objects) == ["Job", "Pod"]
    for obj in objects:
        kube.api.create(obj, namespace)
        hook = kube.api.read(obj, namespace)["metadata"]["annotations"]["helm.sh/hook"]
        assert hook == obj["metadata"]["annotations"]["helm.sh/hook"]
    (job,) = [d for d in objects if d["kind"] == "Job"]
    assert kube.api.read(job, namespace).get("status", {}).get("succeeded") is None
    for obj in objects:
        kube.api.delete(obj, namespace)


def test_api_server_refuses_what_the_offline_schemas_pass(kube: KubeApiServer) -> None:
    """Why this suite exists beside the unit tests: rules only the API server knows.

    A Deployment whose selector does not match its pod labels, and a ScaledObject whose
    minimum exceeds its maximum (a CEL rule in KEDA's CRD), both pass the offline schema
    checks of tests/unit/test_helm_chart.py; the API server refuses them. The chart emits
    neither (test_install_upgrade_uninstall)."""
    namespace, _ = new_namespace(kube, "production-keda")
    objects = rendered("production-keda", namespace)
    (worker,) = [
        d
        for d in objects
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]
    bad_worker = copy.deepcopy(worker)
    bad_worker["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "w"
    kubernetes_validate.validate(bad_worker, "1.37.0", strict=True)
    with pytest.raises(ApiError) as refused:
        kube.api.create(bad_worker, namespace, dry_run=True)
    assert refused.value.code == 422
    assert "selector" in str(refused.value)

    (scaled,) = [d for d in objects if d["kind"] == "ScaledObject"]
    bad_scaled = copy.deepcopy(scaled)
    bad_scaled["spec"]["minReplicaCount"] = bad_scaled["spec"]["maxReplicaCount"] + 1
    jsonschema.validate(bad_scaled, crd_schema("ScaledObject"))
    with pytest.raises(ApiError) as refused:
        kube.api.create(bad_scaled, namespace, dry_run=True)
    assert refused.value.code == 422
    assert "minReplicaCount must be less than or equal to maxReplicaCount" in str(refused.value)

    for good in (worker, scaled):  # and the chart's own pass, as the install test shows
        kube.api.create(good, namespace, dry_run=True)


def test_kubeconfig_reaches_the_server(kube: KubeApiServer) -> None:
    """The version helm checks the chart's kubeVersion against is the release built."""
    version = kube.api.get("/version")
    assert (version["major"], version["minor"]) == ("1", "37")
    assert version["gitVersion"] == "v1.37.2"
    helm(kube, "list", "--all-namespaces")
