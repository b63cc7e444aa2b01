"""deploy/kubernetes/, checked offline: every manifest against the schemas of a pinned
Kubernetes (kubernetes-validate, strict: an unknown field is an error), and against the
service itself, so neither can drift from the other: the probes are the service's own
routes, the grace period covers its whole shutdown, the environment with the Secret and the
ConfigMap's files makes settings the service accepts, and the ConfigMap starts as the files
compose uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.ensemble.loader import parse_ensemble
from service.limits.policy import load_policy
from service.process.server import FLUSH_MARGIN_S, HARD_STOP_AFTER_S
from service.settings import DEFAULT_ENSEMBLE_FILE, Settings, load_settings
from tests.integration.harness import running_service

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes still widely run when these were written; the manifests use nothing
# newer (no native sleep action for preStop, say).
KUBERNETES_VERSION = "1.33.0"
# What the kubelet may wait beyond the service's own bound before its SIGKILL.
MARGIN_S = (1, 10)


def resources() -> dict[str, dict[str, Any]]:
    """Every resource of deploy/kubernetes, by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in found, f"two {document['kind']}s"
            found[document["kind"]] = document
    return found


def container() -> dict[str, Any]:
    (only,) = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def settings_of_the_pod(tmp_path: Path) -> Settings:
    """The settings a pod starts with: the container's environment, the Secret's values, and
    the ConfigMap's files where the pod mounts them (here, in `tmp_path`)."""
    found = resources()
    env = dict(found["Secret"]["stringData"])
    for variable in container()["env"]:
        env[variable["name"]] = variable.get("value", "pod-1")  # a fieldRef: the pod's name
    for name, text in found["ConfigMap"]["data"].items():
        (tmp_path / name).write_text(text)
    mount = next(m for m in container()["volumeMounts"] if m["name"] == "config")["mountPath"]
    for variable in ("ENSEMBLE_FILE", "LIMITS_FILE"):
        env[variable] = str(tmp_path / Path(env[variable]).relative_to(mount))
    return load_settings(env, dotenv_path=None)


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda path: path.name)
def test_each_manifest_is_valid_for_the_pinned_kubernetes(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_shape_is_a_deployment_a_service_a_budget_a_secret_and_a_configmap() -> None:
    found = resources()
    assert set(found) == {"Deployment", "Service", "PodDisruptionBudget", "Secret", "ConfigMap"}
    labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert found["Service"]["spec"]["selector"].items() <= labels.items()
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert (
        found["PodDisruptionBudget"]["spec"]["minAvailable"]
        < found["Deployment"]["spec"]["replicas"]
    )
    # Secrets only through the Secret: no URL or key written into the Deployment.
    written = {v["name"] for v in container()["env"] if "value" in v}
    assert not written & {"DATABASE_URL", "REDIS_URL", "LLM_KEY", "JWT_SECRET", "METRICS_TOKEN"}
    assert {"secretRef": {"name": found["Secret"]["metadata"]["name"]}} in container()["envFrom"]


def test_the_grace_period_covers_the_whole_shutdown(tmp_path: Path) -> None:
    """The pause before SIGTERM, SHUTDOWN_GRACE_S for open streams, the flush of their last
    events, and the process's own hard stop: the kubelet's SIGKILL comes only after."""
    spec = resources()["Deployment"]["spec"]["template"]["spec"]
    pause = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    shutdown = float(pause[1]) + settings_of_the_pod(tmp_path).shutdown_grace_s
    bound = shutdown + FLUSH_MARGIN_S + HARD_STOP_AFTER_S
    assert bound + MARGIN_S[0] <= spec["terminationGracePeriodSeconds"] <= bound + MARGIN_S[1]
    # Liveness cannot fail a draining pod (its listening socket is closed) before it is over.
    liveness = container()["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > bound


def test_the_pod_s_environment_and_files_make_settings_the_service_accepts(
    tmp_path: Path,
) -> None:
    settings = settings_of_the_pod(tmp_path)
    (port,) = container()["ports"]
    assert settings.http_addr.port == port["containerPort"]
    assert settings.production
    assert settings.instance_id == "pod-1"
    assert parse_ensemble(settings.ensemble_file.read_text(), source="ensemble.toml").agents
    assert settings.limits_file is not None
    load_policy(settings.limits_file)


def test_the_configmap_starts_as_the_files_compose_and_the_service_use() -> None:
    data = resources()["ConfigMap"]["data"]
    assert data["limits.toml"] == (ROOT / "deploy" / "limits.toml").read_text()
    assert data["ensemble.toml"] == DEFAULT_ENSEMBLE_FILE.read_text()


async def test_the_probes_are_the_service_s_readiness_and_liveness(tmp_path: Path) -> None:
    probes = {kind: container()[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert {probe["port"] for probe in probes.values()} == {container()["ports"][0]["name"]}
    async with running_service(tmp_path, None) as service:
        ready = await service.client.get(probes["readinessProbe"]["path"])
        alive = await service.client.get(probes["livenessProbe"]["path"])
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert (alive.status_code, alive.json()["status"]) == (200, "ok")
