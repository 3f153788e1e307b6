"""kubeflow/Dockerfile and kubeflow/serving/: consistent with the config and the setup script.

Docker does not run on these machines, so the image is held to what the tests exercise: it
installs with scripts/setup.sh (the script `make setup` runs), on a base whose glibc and
libstdc++ need no repair, at the path the compiled pipeline expects the project."""

import pathlib
import re

import yaml

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.serving import server_settings

KUBEFLOW = pathlib.Path(__file__).resolve().parents[2] / "kubeflow"


def _instructions():
    text = (KUBEFLOW / "Dockerfile").read_text()
    text = re.sub(r"\\\n\s*", " ", text)  # join continuation lines
    return [line.split(None, 1) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_image_base_needs_no_runtime_repair():
    (base,) = [arg for op, arg in _instructions() if op == "FROM"]
    # Debian 13 or Ubuntu 24.04: glibc >= 2.39 and GCC >= 13's libstdc++ (ml-metadata 1.21).
    assert re.match(r"(debian:trixie|debian:13|ubuntu:24\.04|ubuntu:noble)", base), base


def test_image_installs_with_the_setup_script_at_the_configured_project_dir():
    steps = _instructions()
    (workdir,) = [arg for op, arg in steps if op == "WORKDIR"]
    assert workdir == PipelineConfig().kubeflow.project_dir
    runs = [arg for op, arg in steps if op == "RUN"]
    assert "bash scripts/setup.sh --system-only" in runs
    # The runtime environment alone: no dev group (test and lint tools) in the image ...
    assert any(r.startswith("bash scripts/setup.sh --no-dev &&")
               or r == "bash scripts/setup.sh --no-dev" for r in runs)
    # ... and no tests, benchmarks or docs in its build context.
    ignored = (KUBEFLOW.parent / ".dockerignore").read_text().split()
    assert {"tests", "bench", "docs"} <= set(ignored)
    # No second way of installing Python packages.
    assert not [r for r in runs if re.search(r"\bpip3? install|\buv (pip|sync)", r)]
    env = " ".join(arg for op, arg in steps if op == "ENV")
    assert "/opt/recsys-pipeline/.venv/bin" in env and "TF_USE_LEGACY_KERAS=1" in env
    makefile = (KUBEFLOW.parent / "Makefile").read_text()
    assert "bash scripts/setup.sh" in makefile  # the same script as `make setup`


def _documents(name):
    with open(KUBEFLOW / "serving" / name) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_serving_manifests_read_the_pushed_model_base():
    config = PipelineConfig()
    claim = _documents("pvc.yaml")[0]
    assert claim["metadata"]["name"] == config.kubeflow.volume_claim
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for name, models_config, probe_model in (
            ("tf-serving-scann.yaml", "models.config", nodes.SCANN_MODEL),
            ("tf-serving-stock.yaml", "models.stock.config", nodes.BRUTE_FORCE_MODEL)):
        deployment, service = _documents(name)
        assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert f"--model_config_file={config.kubeflow_serving_dir}/{models_config}" in \
            container["args"], name
        mount, _tmp = container["volumeMounts"]  # the model base, and /tmp
        assert mount["mountPath"] == config.kubeflow.volume_mount_path
        volume, _tmp = pod["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == config.kubeflow.volume_claim
        assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{probe_model}"
        # serving.version_labels: a new label may name a version still loading.
        assert "--allow_version_labels_for_unavailable_models=true" in container["args"], name
        # The batching and monitoring files every push writes beside models.config.
        assert "--enable_batching=true" in container["args"], name
        assert (f"--batching_parameters_file={config.kubeflow_serving_dir}/"
                f"{server_settings.BATCHING_FILE}") in container["args"], name
        assert (f"--monitoring_config_file={config.kubeflow_serving_dir}/"
                f"{server_settings.MONITORING_FILE}") in container["args"], name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == config.serving.prometheus_path, name
        assert annotations["prometheus.io/port"] == "8501", name
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    stock = _documents("tf-serving-stock.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    assert stock["image"].startswith("tensorflow/serving:")


def test_the_gateway_routes_every_served_model_by_its_version_labels():
    services = {d["metadata"]["name"]: d for name in ("tf-serving-scann.yaml",
                                                      "tf-serving-stock.yaml")
                for d in _documents(name) if d["kind"] == "Service"}
    routed: dict[str, dict] = {}
    for route in _documents("tf-serving-routes.yaml"):
        assert route["kind"] == "HTTPRoute"
        for rule in route["spec"]["rules"]:
            (match,) = rule["matches"]
            model = re.fullmatch(r"/v1/models/(\w+):predict", match["path"]["value"]).group(1)
            (backend,) = rule["backendRefs"]
            ports = {p["name"]: p["port"] for p in services[backend["name"]]["spec"]["ports"]}
            assert backend["port"] == ports["http"]
            (rewrite,) = rule["filters"]
            path = rewrite["urlRewrite"]["path"]["replaceFullPath"]
            label = re.fullmatch(rf"/v1/models/{model}/labels/(\w+):predict", path).group(1)
            headers = {h["name"]: h["value"] for h in match.get("headers", [])}
            assert headers == ({"x-recsys-track": "canary"} if label == "canary" else {})
            routed.setdefault(model, {})[label] = backend["name"]
    # Every served model, on the server whose models config serves it: ScaNN's image for the
    # models that need its ops, stock TF Serving for the others.
    assert set(routed) == set(nodes.MODEL_NAMES)
    for model, labels in routed.items():
        server = "scann" if model in nodes.SCANN_MODELS else "stock"
        assert labels == {"stable": f"recsys-serving-{server}",
                          "canary": f"recsys-serving-{server}"}, model


def test_tf_serving_image_follows_the_training_tensorflow():
    # A SavedModel needs a TF Serving at least as new as the TensorFlow that wrote it.
    from importlib.metadata import version

    trained = ".".join(version("tensorflow").split(".")[:2])
    container = _documents("tf-serving-stock.yaml")[0]["spec"]["template"]["spec"][
        "containers"][0]
    tag = container["image"].rsplit(":", 1)[1]
    assert ".".join(tag.split(".")[:2]) == trained, (tag, trained)
    for line in (KUBEFLOW.parent / "docs" / "serving.md").read_text().splitlines():
        if "tensorflow/serving" in line and line.startswith("docker run"):
            assert f"tensorflow/serving:{trained}." in line, line


# Kubernetes' Pod Security Standard "restricted" (kubernetes.io/docs/concepts/security/
# pod-security-standards): the fields it checks, as its admission controller reads them.
_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}


def _restricted_violations(pod: dict) -> list[str]:
    found = []
    pod_context = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"pod {key}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {sorted(kinds)}")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        name, context = container["name"], container.get("securityContext") or {}

        def effective(key, context=context):
            return context.get(key, pod_context.get(key))
        if effective("runAsNonRoot") is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            found.append(f"{name}: runAsUser 0")
        if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault",
                                                                   "Localhost"):
            found.append(f"{name}: seccompProfile is not RuntimeDefault")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities['add']}")
        if any("hostPort" in port for port in container.get("ports") or []):
            found.append(f"{name}: hostPort")
        if context.get("readOnlyRootFilesystem") is not True:  # beyond "restricted"
            found.append(f"{name}: the root filesystem is writable")
    return found


def test_every_pod_meets_the_restricted_pod_security_standard():
    pods = [(path.name, d["spec"]["template"]["spec"])
            for path in sorted((KUBEFLOW / "serving").glob("*.yaml"))
            for d in _documents(path.name) if d.get("kind") in ("Deployment", "StatefulSet",
                                                                 "DaemonSet", "Job")]
    assert len(pods) == 2
    for name, pod in pods:
        assert _restricted_violations(pod) == [], name
    # The check itself: what a default pod spec gets wrong.
    assert len(_restricted_violations({"containers": [{"name": "c"}],
                                       "volumes": [{"name": "h", "hostPath": {}}]})) == 6


def test_the_pipeline_image_runs_as_a_numeric_non_root_user():
    users = [arg for op, arg in _instructions() if op == "USER"]
    assert users, "the image sets no USER: its steps would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]
