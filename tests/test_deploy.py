"""The Kubernetes manifests in deploy/, parsed and cross-checked: probes hit real routes on the named port, the
Service and the autoscaler point at the Deployment, resources are requested, the index volume is mounted where
RECSYS_INDEX_ROOT says, and every RECSYS_* variable is one the service reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from api.app import create_app
from api.settings import Settings, unknown_variables

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    """kind -> object, from every manifest listed by the kustomization."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    on_disk = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk, "kustomization.yaml must list every manifest"
    found: dict[str, dict[str, Any]] = {}
    for name in listed:
        for document in yaml.safe_load_all((DEPLOY / name).read_text()):
            assert document["apiVersion"] and document["metadata"]["name"]
            assert document["kind"] not in found
            found[document["kind"]] = document
    return found


def api_container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def test_every_kind_is_there(objects: dict[str, dict[str, Any]]) -> None:
    expected = {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"}
    assert expected <= set(objects)


def test_probes_hit_real_routes_on_the_container_port(objects: dict[str, dict[str, Any]]) -> None:
    container = api_container(objects)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    routes = {getattr(route, "path", None) for route in create_app(Settings()).routes}
    probes = {name: container[name] for name in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["httpGet"]["path"] in routes
        assert probe["httpGet"]["port"] in ports
    env = env_of(container)
    settings = Settings.from_env({**env, "RECSYS_PORT": str(ports["http"])})
    assert settings.port == ports["http"] == Settings().port
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes
    assert int(annotations["prometheus.io/port"]) == ports["http"]


def test_every_variable_is_a_known_setting(objects: dict[str, dict[str, Any]]) -> None:
    env = env_of(api_container(objects))
    assert not unknown_variables(env)
    Settings.from_env(env)  # every value parses
    grace = objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(env["RECSYS_SHUTDOWN_TIMEOUT"]) + 5


def test_service_and_autoscaler_target_the_deployment(objects: dict[str, dict[str, Any]]) -> None:
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objects["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {port["name"] for port in api_container(objects)["ports"]}
    assert all(port["targetPort"] in port_names for port in service["spec"]["ports"])
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_resources_are_requested(objects: dict[str, dict[str, Any]]) -> None:
    requests = api_container(objects)["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    # The autoscaler scales on CPU utilisation, which is relative to the CPU request.
    assert objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_the_index_volume_is_mounted_read_only_at_the_index_root(objects: dict[str, dict[str, Any]]) -> None:
    container = api_container(objects)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    index_root = env_of(container)["RECSYS_INDEX_ROOT"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == index_root)
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim == objects["PersistentVolumeClaim"]["metadata"]["name"]
    # The builder writes the same directory of the same claim.
    job = objects["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    builder = job["containers"][0]
    out = builder["command"][builder["command"].index("--out") + 1]
    builder_mount = next(m for m in builder["volumeMounts"] if m["mountPath"] == out)
    assert builder_mount.get("subPath") == mount.get("subPath")
    assert next(v for v in job["volumes"] if v["name"] == builder_mount["name"])["persistentVolumeClaim"] == {
        "claimName": claim
    }


def test_runs_as_non_root_with_a_writable_tmp(objects: dict[str, dict[str, Any]]) -> None:
    container = api_container(objects)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])  # metrics directory
    keys = env_of(container)["RECSYS_API_KEYS_FILE"]
    assert any(keys.startswith(m["mountPath"] + "/") for m in container["volumeMounts"])


# ---- the first index, and offline validation -------------------------------------------------------------------


def test_the_first_index_is_bootstrapped_and_pods_wait_for_it(objects: dict[str, dict[str, Any]]) -> None:
    """The API pods mount the index read-only, so they cannot build the first index themselves: the Job builds it
    into the same claim directory (the image's entry script, only when `current` is missing) and the pods wait."""
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    index_root = env_of(api_container(objects))["RECSYS_INDEX_ROOT"]
    api_mount = next(m for m in api_container(objects)["volumeMounts"] if m["mountPath"] == index_root)
    (wait,) = pod["initContainers"]
    wait_mount = next(m for m in wait["volumeMounts"] if m["mountPath"] == index_root)
    assert wait_mount["readOnly"] is True and wait_mount["subPath"] == api_mount["subPath"]
    assert f"{index_root}/current" in " ".join(wait["command"])
    job = objects["Job"]["spec"]["template"]["spec"]
    assert job["restartPolicy"] in ("Never", "OnFailure")
    (builder,) = job["containers"]
    assert "command" not in builder, "the image's ENTRYPOINT (docker/entrypoint.sh) does the bootstrap"
    job_env = env_of(builder)
    assert job_env["RECSYS_INDEX_ROOT"] == index_root
    job_mount = next(m for m in builder["volumeMounts"] if m["mountPath"] == index_root)
    assert not job_mount.get("readOnly") and job_mount["subPath"] == api_mount["subPath"]
    claim = next(v for v in job["volumes"] if v["name"] == job_mount["name"])["persistentVolumeClaim"]["claimName"]
    assert claim == objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert builder["image"] == api_container(objects)["image"] == wait["image"]
    assert objects["Job"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


# Field names of the objects used here (Kubernetes API reference, v1.30): a misspelt field (volumeMount,
# readinessprobe) is silently dropped by a lenient apply, so every key must be one of these.
CONTAINER_FIELDS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "ports", "resources", "startupProbe",
    "readinessProbe", "livenessProbe", "lifecycle", "securityContext", "volumeMounts", "workingDir",
}  # fmt: skip
POD_FIELDS = {
    "containers", "initContainers", "volumes", "securityContext", "restartPolicy", "terminationGracePeriodSeconds",
    "serviceAccountName", "nodeSelector", "affinity", "tolerations",
}  # fmt: skip
MOUNT_FIELDS = {"name", "mountPath", "subPath", "readOnly"}


def pod_specs(objects: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        "Deployment": objects["Deployment"]["spec"]["template"]["spec"],
        "Job": objects["Job"]["spec"]["template"]["spec"],
        "CronJob": objects["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    }


def test_pod_specs_have_known_fields_and_consistent_volumes(objects: dict[str, dict[str, Any]]) -> None:
    for kind, pod in pod_specs(objects).items():
        assert set(pod) <= POD_FIELDS, f"{kind}: unknown pod fields {set(pod) - POD_FIELDS}"
        volumes = {volume["name"] for volume in pod.get("volumes", [])}
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{kind}/{container['name']}"
            assert set(container) <= CONTAINER_FIELDS, f"{where}: unknown fields {set(container) - CONTAINER_FIELDS}"
            assert container["image"]
            assert all(isinstance(part, str) for part in container.get("command", []) + container.get("args", []))
            for item in container.get("env", []):
                assert set(item) == {"name", "value"} and isinstance(item["value"], str), f"{where}: env {item}"
            for mount in container.get("volumeMounts", []):
                assert set(mount) <= MOUNT_FIELDS and mount["name"] in volumes, f"{where}: mount {mount}"
                assert mount["mountPath"].startswith("/")


def test_kubectl_renders_the_kustomization_offline() -> None:
    """`kubectl apply --dry-run=client` still asks a server for the API groups, so with no cluster the offline check
    is `kubectl kustomize` (parses every listed manifest) plus the field checks above."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    done = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(done.stdout)}
    assert ("Job", "recsys-index-bootstrap") in rendered and ("Deployment", "recsys-api") in rendered
    assert len(rendered) == 7
