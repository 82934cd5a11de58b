"""A real Kubernetes API server with its etcd, as local processes on loopback ports.

What `helm install` talks to in tests/kube/: the API server of the Kubernetes release the
chart targets, storing objects in etcd, with its admission chain and server-side
validation (built-in types, CRD schemas with their CEL rules). No kubelet, scheduler or
controller-manager runs, so objects are accepted and stored but nothing acts on them: no
pod starts, no Job completes, a deleted namespace stays Terminating.

The binaries come from ``scripts/kube_binaries.sh`` (built from the Go module proxy, once
per machine; then seconds). Clients authenticate with a static bearer token of a
``system:masters`` user; authorization is RBAC, as in a real cluster.
"""

import base64
import contextlib
import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core_voice_cli.binaries import bin_dir, repo_root
from core_voice_cli.procs import ManagedProcess, ProcessGroup, free_port, http_ready
from core_voice_cli.servers import TlsFiles
from tests.certs import make_tls_files

BINARY_ENV_VARS = {"kube-apiserver": "KUBE_APISERVER_BIN", "etcd": "ETCD_BIN"}
"""The env vars scripts/kube_binaries.sh honours: use that binary instead of building one."""
BUILD_TIMEOUT_S = 40 * 60
"""A cold build of both (kube-apiserver is most of it) on a 2-core machine, with margin."""

Json = dict[str, Any]


class ApiError(RuntimeError):
    """The API server answered with an error status; ``status`` is its `Status` object."""

    def __init__(self, code: int, status: Json) -> None:
        super().__init__(f"{code} {status.get('reason', '')}: {status.get('message', status)}")
        self.code = code
        self.status = status


def ensure_binaries(log: Path) -> dict[str, Path]:
    """Build (or take from the machine cache) kube-apiserver and etcd; their paths."""
    with log.open("ab") as out:
        subprocess.run(
            [str(repo_root() / "scripts" / "kube_binaries.sh")],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S,
            check=True,
        )
    found = {}
    for name, env_var in BINARY_ENV_VARS.items():
        override = os.environ.get(env_var)
        found[name] = Path(override) if override else bin_dir() / name
    return found


@dataclass(frozen=True)
class ApiResource:
    """One listable kind of object, as discovery names it."""

    group_version: str
    plural: str
    kind: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        prefix = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{prefix}{where}/{self.plural}" + (f"/{name}" if name else "")


class KubeApi:
    """A small client of the API server's REST API: what the tests check after helm."""

    def __init__(self, url: str, token: str, ca: Path) -> None:
        self.url = url
        self._token = token
        self._tls = ssl.create_default_context(cafile=str(ca))

    def request(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        query: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Json:
        """One API call; the decoded JSON answer. Raises `ApiError` on an error status."""
        answer: Json = json.loads(self.raw(method, path, body, query=query, timeout=timeout))
        return answer

    def raw(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        query: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> bytes:
        """One API call; the answer's body as sent (``/readyz`` answers plain text)."""
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(  # noqa: S310 - https to our loopback API server
            url,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(request, timeout=timeout, context=self._tls) as resp:  # noqa: S310
                    data: bytes = resp.read()
                    return data
            except urllib.error.HTTPError as err:
                raw = err.read()
                retry_after = float(err.headers.get("Retry-After") or 1)
                # 429: not ready for this yet (a CRD's storage just after it is established,
                # flow control); client-go waits Retry-After and asks again, so do we.
                if err.code == 429 and time.monotonic() + retry_after < deadline:
                    time.sleep(retry_after)
                    continue
                try:
                    status = json.loads(raw)
                except ValueError:
                    status = {"message": raw.decode(errors="replace")}
                raise ApiError(err.code, status) from None

    def get(self, path: str) -> Json:
        return self.request("GET", path)

    def create(self, obj: Json, namespace: str | None = None, *, dry_run: bool = False) -> Json:
        """POST ``obj`` with strict field validation (an unknown field is an error)."""
        query = {"fieldValidation": "Strict"}
        if dry_run:
            query["dryRun"] = "All"
        resource = self.resource(obj["apiVersion"], obj["kind"])
        return self.request("POST", resource.path(namespace), obj, query=query)

    def delete(self, obj: Json, namespace: str | None = None) -> None:
        resource = self.resource(obj["apiVersion"], obj["kind"])
        self.request("DELETE", resource.path(namespace, obj["metadata"]["name"]))

    def read(self, obj: Json, namespace: str | None = None) -> Json:
        """The stored object with ``obj``'s apiVersion, kind and name."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        return self.get(resource.path(namespace, obj["metadata"]["name"]))

    def resource(self, api_version: str, kind: str) -> ApiResource:
        for found in self._discover(api_version):
            if found.kind == kind:
                return found
        raise LookupError(f"the API server serves no {kind} in {api_version}")

    def _discover(self, group_version: str) -> list[ApiResource]:
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        listed = self.get(path)["resources"]
        return [
            ApiResource(group_version, r["name"], r["kind"], bool(r["namespaced"]))
            for r in listed
            if "/" not in r["name"]  # subresources (pods/log, deployments/scale)
        ]

    def namespaced_resources(self) -> list[ApiResource]:
        """Every kind that lives in a namespace and can be listed, at its preferred version
        (CRDs included: discovery is asked anew each time)."""
        versions = ["v1"] + [
            group["preferredVersion"]["groupVersion"] for group in self.get("/apis")["groups"]
        ]
        return [
            resource
            for version in versions
            for resource in self._discover(version)
            if resource.namespaced
        ]

    def namespace_contents(self, namespace: str) -> set[tuple[str, str]]:
        """(kind, name) of everything stored in ``namespace``, events aside."""
        found: set[tuple[str, str]] = set()
        for resource in self.namespaced_resources():
            if resource.kind == "Event":
                continue
            try:
                items = self.get(resource.path(namespace))["items"]
            except ApiError as err:
                if err.code in (404, 405):  # not listable (e.g. bindings, tokenreviews)
                    continue
                raise
            found |= {(resource.kind, item["metadata"]["name"]) for item in items}
        return found

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not true after {timeout} s: {what}")
            time.sleep(0.1)


def _write_sa_keys(directory: Path) -> tuple[Path, Path]:
    """The key pair service-account tokens are signed with: (private, public) PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = directory / "sa.key"
    public = directory / "sa.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@dataclass
class KubeApiServer:
    """etcd and kube-apiserver on free loopback ports, their data and certs under ``base``."""

    base: Path
    log_dir: Path
    binaries: dict[str, Path]
    port: int = field(default_factory=free_port)
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @cached_property
    def tls(self) -> TlsFiles:
        return make_tls_files(self.base / "tls", ca_name="core-voice test kube CA")

    @cached_property
    def api(self) -> KubeApi:
        return KubeApi(self.url, self.token, self.tls.ca)

    def etcd(self) -> ManagedProcess:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        argv = [
            str(self.binaries["etcd"]),
            "--name", "cv",
            "--data-dir", str(self.base / "etcd"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"cv={peer}",
            "--unsafe-no-fsync",  # throwaway data: no disk flushes on a shared CI disk
            "--log-level", "warn",
        ]  # fmt: skip
        return ManagedProcess(
            "etcd", argv, log_dir=self.log_dir, ready=http_ready(f"{client}/health")
        )

    def apiserver(self) -> ManagedProcess:
        private, public = _write_sa_keys(self.base)
        tokens = self.base / "tokens.csv"
        # token,user,uid,"group": system:masters is bound to cluster-admin by RBAC's bootstrap.
        tokens.write_text(f'{self.token},core-voice-test,core-voice-test,"system:masters"\n')
        tokens.chmod(0o600)
        argv = [
            str(self.binaries["kube-apiserver"]),
            "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert),
            "--tls-private-key-file", str(self.tls.key),
            "--cert-dir", str(self.base / "apiserver-certs"),
            "--token-auth-file", str(tokens),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", self.url,
            "--service-account-key-file", str(public),
            "--service-account-signing-key-file", str(private),
            "--service-cluster-ip-range", "10.96.0.0/16",
            # Loopback may not be advertised as the `kubernetes` Service's endpoint; nothing
            # here needs that Service.
            "--endpoint-reconciler-type", "none",
            "--profiling=false",
        ]  # fmt: skip
        return ManagedProcess("kube-apiserver", argv, log_dir=self.log_dir, ready=self._ready)

    def _ready(self) -> bool:
        try:
            self.api.raw("GET", "/readyz", timeout=2.0)
        except (ApiError, OSError):
            return False
        return True

    def kubeconfig(self) -> Path:
        """A kubeconfig for helm: this server, its CA, the admin token (0600)."""
        path = self.base / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(
                            self.tls.ca.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


@contextlib.contextmanager
def running_kube(base: Path, *, ready_timeout: float = 120.0) -> Iterator[KubeApiServer]:
    """etcd and kube-apiserver (built first if this machine has no cached build), stopped in
    reverse order when the block ends. Logs: ``base``/*.log, the build's included."""
    binaries = ensure_binaries(base / "kube-binaries.log")
    for name, path in binaries.items():
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(f"{name}: {path} is not executable after kube_binaries.sh")
    server = KubeApiServer(base=base, log_dir=base, binaries=binaries)
    with ProcessGroup() as group:
        group.start(server.etcd(), timeout=30)
        group.start(server.apiserver(), timeout=ready_timeout)
        yield server
