"""The deployment files of ``deploy/``, checked by the tools made for each (offline) and against
raftq's own config loader, since none of them can run here (no Docker daemon, no systemd as
PID 1, no Kubernetes cluster):

- the Kubernetes manifests against the Kubernetes JSON schemas, strictly (unknown fields are
  errors), with ``kubernetes-validate`` (the schemas ship inside the package);
- ``docker-compose.yml`` against the Compose Specification's schema, with ``check-jsonschema``
  (its vendored copy: no download; any network use would fail through a dead proxy);
- the systemd unit with ``systemd-analyze verify`` (no warning allowed) and
  ``systemd-analyze security --offline``;
- the Dockerfile with ``hadolint`` (every rule, down to ``info``);
- the cluster TOML of the compose file and of the ConfigMap with ``raftq.config``: three nodes,
  named as the services and the pods are, on the ports the containers declare.

Each tool is also shown a broken copy and must refuse it (a check that cannot fail proves
nothing). The tools run as processes, so those tests are ``integration``; the rest is in-process.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from raftq.config import ClusterConfig, parse_config
from raftq.raft.fail_stop import EXIT_STATE_CORRUPT, EXIT_STORAGE_FAILED, EXIT_VERSION_TOO_NEW
from raftq.raft.pysyncobj import engine

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
UNIT = DEPLOY / "systemd" / "raftq@.service"
DOCKERFILE = DEPLOY / "Dockerfile"
BIN = Path(sys.executable).parent
# What the nodes read from their environment: a secret (raft addresses are not loopback) and
# the admin token the configs name.
NODE_ENV = {"RAFTQ_SECRET": "s" * 32, "RAFTQ_ADMIN_TOKEN": "t" * 32}
# The oldest Kubernetes still commonly run, and the newest the package knows.
K8S_VERSIONS = ("1.29.0", latest_version())
# Any attempt to reach the network fails at once (the tools must work offline).
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def _tool(name: str) -> str:
    """The venv's copy of a dev tool (pyproject's dev extra), else one on PATH."""
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[dev]', or .ci/system-deps)"
    return str(found)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **OFFLINE}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)


# -- Kubernetes ------------------------------------------------------------------------------


def _k8s() -> dict[str, dict[str, Any]]:
    """Every manifest of deploy/k8s by kind (one object of each, but the two Services)."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            key = doc["kind"] if doc["kind"] != "Service" else f"Service/{doc['metadata']['name']}"
            assert key not in docs, key
            docs[key] = doc
    return docs


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    docs = _k8s()
    kinds = {"ConfigMap", "Service/raftq", "Service/raftq-api", "StatefulSet"}
    assert kinds | {"PodDisruptionBudget"} == set(docs)
    for version in K8S_VERSIONS:
        for doc in docs.values():
            kubernetes_validate.validate(doc, version, strict=True)


def test_k8s_schema_check_refuses_a_misspelt_field() -> None:
    sts = _k8s()["StatefulSet"]
    sts["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(sts, K8S_VERSIONS[0], strict=True)


def _container(sts: dict[str, Any]) -> dict[str, Any]:
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return container


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def test_k8s_statefulset_runs_the_configmaps_three_nodes() -> None:
    docs = _k8s()
    sts, headless, pdb = docs["StatefulSet"], docs["Service/raftq"], docs["PodDisruptionBudget"]
    spec = sts["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == 3
    # No node is ready before a majority runs: OrderedReady would wait on raftq-0 forever.
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"].items() <= labels.items()
    assert docs["Service/raftq-api"]["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": labels}}

    container = _container(sts)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    # A replaced pod's new IP is found by its peers within their DNS cache's period.
    assert spec["minReadySeconds"] > engine._DNS_CACHE_S
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert re.search(r"\braftq node drain --config \S+ --node \S+", pre_stop), pre_stop
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > 60  # the drain's timeout
    env = {e["name"]: e for e in container["env"]}
    assert env["RAFTQ_NODE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert {"RAFTQ_SECRET", "RAFTQ_ADMIN_TOKEN", "RAFTQ_TOKEN"} <= env.keys()

    # The ConfigMap's cluster.toml, as raftq loads it: one node per pod, named after the pod
    # (the ordinal), at the pod's name under the headless Service, on the declared ports.
    config = _k8s_config(docs)
    pods = [f"{sts['metadata']['name']}-{i}" for i in range(spec["replicas"])]
    assert list(config.node_ids) == pods
    for node in config.nodes:
        assert node.api_host == node.raft_host
        assert node.api_host.startswith(f"{node.id}.{spec['serviceName']}."), node.api_host
        assert node.api_port == _port(container, "api")
        assert node.raft_port == _port(container, "raft")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["data"]
    assert Path(mounts["data"]) == config.data_dir
    assert env["RAFTQ_CONFIG"]["value"] == f"{mounts['config']}/cluster.toml"
    assert config.tokens and config.tokens[0].token_env == "RAFTQ_ADMIN_TOKEN"


def _k8s_config(docs: dict[str, dict[str, Any]]) -> ClusterConfig:
    return parse_config(docs["ConfigMap"]["data"]["cluster.toml"], "/etc/raftq", NODE_ENV)


# -- Docker Compose --------------------------------------------------------------------------


def test_compose_file_runs_its_configs_three_nodes() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved, as compose does
    services = compose["services"]
    toml = DEPLOY / "docker" / "cluster.toml"
    config = parse_config(toml.read_text(), toml.parent, NODE_ENV)
    assert list(services) == list(config.node_ids) == ["n1", "n2", "n3"]
    for node in config.nodes:
        service = services[node.id]
        # The node id and the host of its addresses are the service's names.
        assert service["environment"]["RAFTQ_NODE"] == node.id == service["hostname"]
        assert node.api_host == node.raft_host == node.id
        config_mount, data_mount = service["volumes"]
        assert config_mount == f"./docker/cluster.toml:{service['environment']['RAFTQ_CONFIG']}:ro"
        assert data_mount == f"{node.id}-data:{config.data_dir}"
        (published,) = service["ports"]
        assert published.endswith(f":{node.api_port}")
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert set(compose["volumes"]) == {f"{n}-data" for n in config.node_ids}


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    schema = ("--builtin-schema", "vendor.compose-spec")
    return _run(_tool("check-jsonschema"), *schema, str(path))


@pytest.mark.integration
def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    checked = _check_compose(COMPOSE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:"))
    refused = _check_compose(broken)
    assert refused.returncode == 1 and "stop_grace_periods" in refused.stdout, refused.stdout


# -- systemd ---------------------------------------------------------------------------------


def _unit_lines() -> list[tuple[str, str]]:
    lines = UNIT.read_text().splitlines()
    return [
        (key, value)
        for key, _, value in (ln.partition("=") for ln in lines)
        if value and not key.startswith(("#", "["))
    ]


def test_systemd_unit_waits_for_readiness_and_leaves_fail_stops_to_an_operator() -> None:
    unit = dict(_unit_lines())
    assert unit["Type"] == "notify"  # raftq.node.notify: READY=1 once /readyz passes
    assert unit["ExecStart"].endswith(" serve --config /etc/raftq/cluster.toml --node %i")
    assert unit["Restart"] == "on-failure"
    prevented = {int(code) for code in unit["RestartPreventExitStatus"].split()}
    assert {EXIT_STATE_CORRUPT, EXIT_STORAGE_FAILED, EXIT_VERSION_TOO_NEW, 2} == prevented
    assert unit["TimeoutStartSec"] == "infinity"  # readiness needs a majority of the cluster
    assert unit["ProtectSystem"] == "strict" and unit["StateDirectory"] == "raftq"


def _verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of instance n1 of ``unit``. verify refuses an ExecStart whose
    program is missing, and /opt/raftq is not installed here: the copy checked runs this
    venv's raftq instead, the unit's only line that differs."""
    copy = tmp_path / "raftq@.service"
    text = unit.read_text()
    assert "ExecStart=/opt/raftq/bin/raftq " in text
    copy.write_text(text.replace("ExecStart=/opt/raftq/bin/raftq ", f"ExecStart={BIN}/raftq "))
    return _run(_tool("systemd-analyze"), "verify", "--man=no", str(tmp_path / "raftq@n1.service"))


@pytest.mark.integration
def test_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    verified = _verify(UNIT, tmp_path)
    assert (verified.returncode, verified.stderr, verified.stdout) == (0, "", "")
    # Hardening: systemd's own exposure score (0 safe .. 10 exposed), here at most 2.0.
    analyzer = _tool("systemd-analyze")
    unit = str(tmp_path / "raftq@n1.service")
    scored = _run(analyzer, "security", "--offline=yes", "--threshold=20", unit)
    assert scored.returncode == 0, scored.stdout[-600:]
    # verify exits 0 on an unknown key or a bad value; its warning is what the test sees.
    broken = tmp_path / "broken"
    broken.mkdir()
    typo = broken / "raftq@.service"
    typo.write_text(UNIT.read_text().replace("RestartPreventExitStatus=", "RestartPrevent="))
    refused = _verify(typo, broken)
    assert "Unknown key 'RestartPrevent'" in refused.stderr, refused.stderr


# -- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_node_image() -> None:
    text = DOCKERFILE.read_text().replace("\\\n", " ")  # continuation lines joined
    instructions = re.findall(r"^([A-Z]+) (.*)$", text, re.MULTILINE)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    (user,) = [arg for op, arg in instructions if op == "USER"]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0  # numeric: runAsNonRoot
    config = _k8s_config(_k8s())
    assert ("VOLUME", f'["{config.data_dir}"]') in instructions
    assert ("CMD", '["serve"]') in instructions
    healthcheck = dict(instructions)["HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["python", "/opt/raftq/share/healthcheck.py"]'), healthcheck
    # Every file COPY takes is in the build context that Dockerfile.dockerignore leaves.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    kept = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    root = DEPLOY.parent
    for op, arg in instructions:
        if op == "COPY":
            sources = [s for s in arg.split()[:-1] if not s.startswith("--")]
            for source in sources:
                assert (root / source).exists(), source
                assert any(source == k or source.startswith(f"{k}/") for k in kept), source


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return _run(_tool("hadolint"), "--no-color", "--failure-threshold", "info", str(path))


@pytest.mark.integration
def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    linted = _hadolint(DOCKERFILE)
    assert (linted.returncode, linted.stdout) == (0, ""), linted.stdout + linted.stderr
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER raftq"))
    refused = _hadolint(broken)
    assert refused.returncode == 1 and "DL3066" in refused.stdout, refused.stdout
