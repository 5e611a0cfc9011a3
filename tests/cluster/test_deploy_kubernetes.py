"""The Kubernetes deployment: the DaskCluster manifest and the image it runs, checked offline.

No Kubernetes here: the manifest is parsed and checked against what the
dask-kubernetes operator needs (its CRD's required fields, the ports its Service and
probes use, the commands the pods run), and against the spec the operator's own
``make_cluster_spec`` generates when dask-kubernetes is installed (the ``dev`` extra
installs it).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

KUBERNETES = REPO / "cluster" / "deploy" / "kubernetes"
MANIFEST = KUBERNETES / "daskcluster.yaml"
DOCKERFILE = KUBERNETES / "Dockerfile"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    documents = list(yaml.safe_load_all(MANIFEST.read_text()))
    assert len(documents) == 1
    document = documents[0]
    assert isinstance(document, dict)
    return document


def _container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    containers = {c["name"]: c for c in pod_spec["containers"]}
    return containers[name]


def _ports(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    return {item["name"]: item[key] for item in items}


def _command(container: dict[str, Any]) -> list[str]:
    """What the container runs, with the legacy ``dask-worker`` spelled ``dask worker``."""
    words = [*container.get("command", []), *container.get("args", [])]
    if words and words[0] in ("dask-worker", "dask-scheduler"):
        words = ["dask", words[0].split("-")[1], *words[1:]]
    return words


def test_it_is_a_dask_cluster_of_the_operator(manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == "kubernetes.dask.org/v1"
    assert manifest["kind"] == "DaskCluster"
    assert manifest["metadata"]["name"] == "vidsvd"
    assert set(manifest["spec"]) == {"idleTimeout", "scheduler", "worker"}


def test_workers_run_dask_worker_with_resources_and_store_credentials(manifest: dict[str, Any]) -> None:
    worker = manifest["spec"]["worker"]
    assert isinstance(worker["replicas"], int) and worker["replicas"] >= 1
    container = _container(worker["spec"], "worker")
    command = _command(container)
    assert command[:2] == ["dask", "worker"]
    assert (
        "$(DASK_WORKER_NAME)" in command
    )  # the operator sets it; the address comes as DASK_SCHEDULER_ADDRESS
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]  # guaranteed: no worker is evicted for memory
    assert re.fullmatch(r"\d+Gi", resources["limits"]["memory"])
    threads = command[command.index("--nthreads") + 1]
    assert threads == resources["limits"]["cpu"]  # one thread per core the pod may use
    env = {item["name"]: item for item in container["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        secret = env[name]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": "vidsvd-store", "key": name}
        assert "value" not in env[name]  # never a credential in the manifest
    assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_the_scheduler_is_served_on_8786_with_its_dashboard(manifest: dict[str, Any]) -> None:
    scheduler = manifest["spec"]["scheduler"]
    container = _container(scheduler["spec"], "scheduler")
    assert _command(container)[:2] == ["dask", "scheduler"]
    assert _ports(container["ports"], "containerPort") == {"tcp-comm": 8786, "http-dashboard": 8787}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"port": "http-dashboard", "path": "/health"}
    service = scheduler["service"]
    assert service["type"] == "ClusterIP"  # reached by port-forward or from inside the cluster
    assert service["selector"] == {"dask.org/cluster-name": "vidsvd", "dask.org/component": "scheduler"}
    assert _ports(service["ports"], "port") == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert _ports(service["ports"], "targetPort") == {
        "tcp-comm": "tcp-comm",
        "http-dashboard": "http-dashboard",
    }


def test_scheduler_and_workers_run_the_same_vidsvd_image(manifest: dict[str, Any]) -> None:
    spec = manifest["spec"]
    images = {
        _container(spec["worker"]["spec"], "worker")["image"],
        _container(spec["scheduler"]["spec"], "scheduler")["image"],
    }
    assert len(images) == 1
    (image,) = images
    tag = image.rsplit(":", 1)[-1]
    assert f"-t {image.rsplit(':', 1)[0]}:{tag}" in DOCKERFILE.read_text()  # the build line makes that image


def test_the_dockerfile_installs_vidsvd_and_the_clients_library_versions() -> None:
    text = DOCKERFILE.read_text()
    for folder in ("cluster", "pipelines", "storage"):
        assert f"COPY {folder} {folder}" in text
    install = re.search(r"RUN pip install (.*?)(?:&&|$)", text, re.S)
    assert install is not None
    words = shlex.split(install.group(1).replace("\\\n", " "))
    assert ".[s3]" in words  # s3fs for s3:// stores
    assert "${LIBRARY_PINS}" in words
    assert "library_pins()" in text  # the build line pins what this machine has
    assert "ENTRYPOINT" not in text  # the manifest's command decides what runs


def _check_schema(value: Any, schema: dict[str, Any], definitions: dict[str, Any], path: str) -> None:
    """The operator CRD's own constraints: required keys and types, where it spells them out."""
    reference = schema.get("$ref", "")
    if reference:
        name = reference.rpartition("#/definitions/")[2]
        if "customresources/templates.yaml" not in reference:
            return  # Kubernetes' PodSpec and ServiceSpec: not shipped with the operator
        schema = definitions[name]
    kind = schema.get("type")
    expected = {"object": dict, "integer": int, "string": str}.get(kind or "")
    if expected is not None:
        assert isinstance(value, expected), f"{path} must be {kind}"
    for key in schema.get("required", []):
        assert key in value, f"{path}.{key} is required by the DaskCluster CRD"
    for key, sub in schema.get("properties", {}).items():
        if isinstance(value, dict) and key in value:
            _check_schema(value[key], sub, definitions, f"{path}.{key}")


def test_the_manifest_satisfies_the_operators_crd(manifest: dict[str, Any]) -> None:
    resources = pytest.importorskip("dask_kubernetes.operator").__file__
    assert resources is not None
    folder = Path(resources).parent / "customresources"
    crd = yaml.safe_load((folder / "daskcluster.yaml").read_text())
    definitions = yaml.safe_load((folder / "templates.yaml").read_text())["definitions"]
    assert crd["spec"]["group"] == manifest["apiVersion"].split("/")[0]
    version = crd["spec"]["versions"][0]
    assert version["name"] == manifest["apiVersion"].split("/")[1]
    assert crd["spec"]["names"]["kind"] == manifest["kind"]
    _check_schema(manifest, version["schema"]["openAPIV3Schema"], definitions, "DaskCluster")


def test_the_manifest_agrees_with_the_operators_generated_spec(manifest: dict[str, Any]) -> None:
    operator = pytest.importorskip("dask_kubernetes.operator")
    ours = manifest["spec"]
    worker = _container(ours["worker"]["spec"], "worker")
    generated = operator.make_cluster_spec(
        name=manifest["metadata"]["name"],
        image=worker["image"],
        n_workers=ours["worker"]["replicas"],
        resources=worker["resources"],
        env=worker["env"],
    )
    assert {k: generated[k] for k in ("apiVersion", "kind", "metadata")} == {
        k: manifest[k] for k in ("apiVersion", "kind", "metadata")
    }
    theirs = generated["spec"]
    assert set(theirs) == set(ours)
    assert theirs["idleTimeout"] == ours["idleTimeout"]
    assert theirs["worker"]["replicas"] == ours["worker"]["replicas"]

    their_worker = _container(theirs["worker"]["spec"], "worker")
    for key in ("image", "resources", "env"):
        assert their_worker[key] == worker[key]
    assert their_worker["ports"] == worker["ports"]
    their_command, our_command = _command(their_worker), _command(worker)
    assert their_command[:2] == our_command[:2] == ["dask", "worker"]
    assert set(their_command) <= set(our_command)  # ours adds --nthreads only

    their_scheduler = _container(theirs["scheduler"]["spec"], "scheduler")
    our_scheduler = _container(ours["scheduler"]["spec"], "scheduler")
    assert _command(their_scheduler) == _command(our_scheduler)
    for key in ("ports", "readinessProbe", "livenessProbe"):
        assert their_scheduler[key] == our_scheduler[key]
    assert theirs["scheduler"]["service"] == ours["scheduler"]["service"]
    # our scheduler is smaller than the workers and holds no store credentials: it reads no data
    assert our_scheduler["resources"] != worker["resources"]
    assert "env" not in our_scheduler
