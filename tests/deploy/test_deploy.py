"""The deployment files, checked statically (no Docker engine or cluster here).

deploy/compose.yaml, deploy/Dockerfile and every YAML under deploy/k8s/ are
parsed and held to what a run would otherwise find out late: images pinned,
every LOYALTY_* variable a real setting and documented, probes on /healthz at
the metrics port, no more consumers than partitions, commands the CLI knows.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from streams.cli import build_parser
from streams.kafka_security import kafka_python_options
from streams.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "k8s"
K8S_FILES = sorted(K8S.rglob("*.yaml"))
VARIABLE = re.compile(r"\bLOYALTY_[A-Z][A-Z0-9_]*")
HEALTH_PATH = "/healthz"
LOYALTY_SERVICES = ("setup", "worker", "relay", "projections")
LONG_RUNNING_SERVICES = ("worker", "relay", "projections")
PENDING_COMMANDS: set[str] = set()  # commands a deploy file may name before they exist
WORKLOAD_KINDS = ("Deployment", "Job")


# ------------------------------------------------------------------ loading


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in K8S_FILES
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_kind(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_documents() if doc.get("kind") == kind]


def k8s_named(kind: str, name: str) -> dict:
    [doc] = [doc for doc in k8s_kind(kind) if doc["metadata"]["name"] == name]
    return doc


def configmap() -> dict[str, str]:
    return k8s_named("ConfigMap", "loyalty-config")["data"]


def secret() -> dict[str, str]:
    return k8s_named("Secret", "loyalty-secrets")["stringData"]


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def workloads() -> list[dict]:
    return [doc for kind in WORKLOAD_KINDS for doc in k8s_kind(kind)]


def compose_env() -> dict[str, str]:
    return compose()["services"]["worker"]["environment"]


def readme_variables() -> set[str]:
    """The LOYALTY_* names in the first column of the README's configuration table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("### Configuration", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    return {name for row in rows for name in VARIABLE.findall(row.split("|")[1])}


def settings_variables() -> set[str]:
    return {ENV_PREFIX + field.name.upper() for field in fields(Settings)}


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


# -------------------------------------------------------------------- parse


def test_every_file_parses_and_k8s_documents_have_kind_and_name():
    assert compose()["services"]
    assert K8S_FILES, "no manifests found"
    for path, doc in k8s_documents():
        assert doc.get("apiVersion") and doc.get("kind"), path
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], path


def test_kustomization_lists_every_manifest_except_strimzi():
    [kustomization] = k8s_kind("Kustomization")
    listed = set(kustomization["resources"])
    expected = {p.name for p in K8S_FILES if p.parent == K8S and p.name != "kustomization.yaml"}
    assert listed == expected


# ------------------------------------------------------------------- images


def image_references() -> list[tuple[str, str]]:
    """(where, image) for every image the deploy files name."""
    found = [(f"compose:{name}", service["image"])
             for name, service in compose()["services"].items() if "image" in service]
    found += [(f"k8s:{w['metadata']['name']}", c["image"]) for w in workloads() for c in containers(w)]
    found += [("Dockerfile", line.split()[1]) for line in DOCKERFILE.read_text().splitlines()
              if line.startswith("FROM ")]
    [kustomization] = k8s_kind("Kustomization")
    found += [("kustomization", f"{i['newName']}:{i['newTag']}") for i in kustomization["images"]]
    return found


def is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def test_every_image_is_pinned_to_a_version():
    references = image_references()
    assert len(references) >= 10
    unpinned = [(where, image) for where, image in references if not is_pinned(image)]
    assert unpinned == []


def test_is_pinned_refuses_latest_and_bare_names():
    assert not is_pinned("apache/kafka")
    assert not is_pinned("apache/kafka:latest")
    assert not is_pinned("registry:5000/loyalty")
    assert is_pinned("registry:5000/loyalty:0.1.0")
    assert is_pinned("postgres@sha256:" + "0" * 64)


def test_the_project_image_is_tagged_with_the_project_version():
    ours = [image for _, image in image_references() if image.split(":")[0].endswith("loyalty-ledger")]
    assert ours and {image.rsplit(":", 1)[1] for image in ours} == {project_version()}


def test_dockerfile_installs_the_project_on_pinned_python_3_11_slim():
    text = DOCKERFILE.read_text()
    [base] = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    assert "pip install ." in text
    assert re.search(r"^USER \d+$", text, re.MULTILINE), "runs as root"


# ---------------------------------------------------------------- variables


def deploy_variables() -> set[str]:
    texts = [COMPOSE.read_text()] + [path.read_text() for path in K8S_FILES]
    return {name for text in texts for name in VARIABLE.findall(text)}


def test_every_loyalty_variable_is_a_setting_and_in_the_readme_table():
    used = deploy_variables()
    assert "LOYALTY_DATABASE_URL" in used and "LOYALTY_METRICS_PORT" in used
    assert used - settings_variables() == set(), "not a field of streams.settings.Settings"
    assert used - readme_variables() == set(), "not in the README's configuration table"


def test_every_new_setting_is_documented_in_the_readme_table():
    new = {"LOYALTY_SECURITY_PROTOCOL", "LOYALTY_SASL_MECHANISM", "LOYALTY_SASL_USERNAME",
           "LOYALTY_SASL_PASSWORD", "LOYALTY_SSL_CAFILE", "LOYALTY_SSL_CERTFILE",
           "LOYALTY_SSL_KEYFILE", "LOYALTY_METRICS_PORT"}
    assert new <= settings_variables()
    assert new <= readme_variables()


def test_secrets_live_in_the_secret_not_the_configmap():
    secrets = {"LOYALTY_DATABASE_URL", "LOYALTY_SASL_PASSWORD"}
    assert secrets <= set(secret())
    assert secrets.isdisjoint(configmap())


def test_k8s_configuration_is_valid_settings():
    settings = Settings.from_env({**configmap(), **secret()})
    assert settings.partitions == int(configmap()["LOYALTY_PARTITIONS"])
    assert kafka_python_options(settings)["security_protocol"] == settings.security_protocol


def test_compose_configuration_is_valid_settings():
    settings = Settings.from_env(compose_env())
    assert settings.metrics_port is not None
    assert kafka_python_options(settings) == {"security_protocol": "PLAINTEXT"}


def test_every_workload_reads_the_configmap_and_secret():
    for workload in workloads():
        for container in containers(workload):
            sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
            assert sources == {"loyalty-config", "loyalty-secrets"}, workload["metadata"]["name"]


def test_loyalty_services_share_the_compose_environment():
    services = compose()["services"]
    for name in LOYALTY_SERVICES:
        assert services[name]["environment"] == compose_env(), name


# ------------------------------------------------------------------- probes


def named_ports(container: dict) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}


def test_k8s_probes_hit_healthz_on_the_metrics_port():
    metrics_port = int(configmap()["LOYALTY_METRICS_PORT"])
    for deployment in k8s_kind("Deployment"):
        for container in containers(deployment):
            assert {"readinessProbe", "livenessProbe"} <= set(container), container["name"]
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in container:
                    probe = container[kind]["httpGet"]
                    port = named_ports(container).get(probe["port"], probe["port"])
                    assert (probe["path"], port) == (HEALTH_PATH, metrics_port), (container["name"], kind)


def test_k8s_scrape_annotations_match_the_metrics_port():
    for deployment in k8s_kind("Deployment"):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == configmap()["LOYALTY_METRICS_PORT"]
        assert annotations["prometheus.io/path"] == "/metrics"


def test_compose_health_checks_hit_healthz_on_the_metrics_port():
    url = f"127.0.0.1:{compose_env()['LOYALTY_METRICS_PORT']}{HEALTH_PATH}"
    services = compose()["services"]
    for name in LONG_RUNNING_SERVICES:
        assert url in " ".join(services[name]["healthcheck"]["test"]), name
    for name in ("kafka", "postgres"):
        assert services[name]["healthcheck"]["test"], name


# ---------------------------------------------------------------- resources


def test_every_k8s_container_has_requests_and_limits():
    for workload in workloads():
        for container in containers(workload):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), (container["name"], bound)


# ------------------------------------------------------------------ scaling


def replicas(name: str) -> int:
    return k8s_named("Deployment", name)["spec"]["replicas"]


def test_k8s_consumers_fit_the_partitions():
    # only workers consume the events topic's partitions (the relay follows the event store)
    partitions = int(configmap()["LOYALTY_PARTITIONS"])
    assert replicas("loyalty-worker") <= partitions
    assert replicas("loyalty-worker") <= partitions


def test_exactly_one_relay():
    assert replicas("loyalty-relay") == 1
    assert k8s_named("Deployment", "loyalty-relay")["spec"]["strategy"]["type"] == "Recreate"


def test_compose_consumers_fit_the_partitions():
    services = compose()["services"]
    assert services["worker"]["deploy"]["replicas"] + 1 <= int(compose_env()["LOYALTY_PARTITIONS"])


def test_strimzi_topics_match_the_configmap():
    config = configmap()
    topics = {doc["metadata"]["name"]: doc["spec"] for doc in k8s_kind("KafkaTopic")}
    expected = {config[f"LOYALTY_{kind}_TOPIC"] for kind in
                ("EVENTS", "LEDGER", "TIER_CHANGES", "DEAD_LETTER", "CREDITS")}
    assert set(topics) == expected
    for name, spec in topics.items():
        assert spec["partitions"] == int(config["LOYALTY_PARTITIONS"]), name
        assert spec["replicas"] == int(config["LOYALTY_REPLICATION_FACTOR"]), name


# ----------------------------------------------------------------- commands


def subcommands() -> set[str]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def loyalty_commands() -> list[tuple[str, list[str], bool]]:
    """(where, argv, is_placeholder) of every `loyalty` invocation."""
    found = [(f"compose:{name}", service["command"], "profiles" in service)
             for name, service in compose()["services"].items()
             if name in LONG_RUNNING_SERVICES]
    found += [(f"k8s:{d['metadata']['name']}", c["args"], d["spec"]["replicas"] == 0)
              for d in k8s_kind("Deployment") for c in containers(d)]
    return found


def test_every_command_exists_or_is_a_marked_placeholder():
    known = subcommands()
    for where, argv, placeholder in loyalty_commands():
        if argv[0] in known:
            build_parser().parse_args(argv)  # flags too: exits on an unknown one
        else:
            assert argv[0] in PENDING_COMMANDS, where
            assert placeholder, f"{where}: `loyalty {argv[0]}` does not exist yet; keep it off"


def setup_scripts() -> list[str]:
    job = k8s_named("Job", "loyalty-setup")
    return [compose()["services"]["setup"]["command"][0], containers(job)[0]["args"][0]]


@pytest.mark.parametrize("index", [0, 1], ids=["compose", "k8s"])
def test_setup_script_compiles_and_names_real_functions(index):
    script = setup_scripts()[index]
    compile(script, "setup", "exec")
    for module, name in re.findall(r"from ([\w.]+) import (\w+)", script):
        assert hasattr(__import__(module, fromlist=[name]), name), (module, name)


def test_compose_and_k8s_setup_scripts_are_the_same():
    compose_script, k8s_script = setup_scripts()
    assert compose_script.strip() == k8s_script.strip()
