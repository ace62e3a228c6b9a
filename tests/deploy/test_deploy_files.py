"""Offline checks of deploy/: the Dockerfile, the compose file, the Kubernetes manifests, the systemd
units and the scripts beside them.

Nothing here builds an image or talks to a cluster (no Docker engine, no Kubernetes here). What is
checked: the Kubernetes manifests against the JSON schemas of fixed Kubernetes versions (strict: unknown
fields fail) shipped by ``kubernetes-validate``; the compose file against the Compose Specification's
schema (vendored in ``tests/deploy/schemas``); the Dockerfile, parsed; the systemd units with
``systemd-analyze`` when the machine has it; the shell scripts with ``bash -n`` / ``sh -n``,
``shellcheck`` when present, and by running them against stub ``kubectl`` and ``eventapp`` commands.
Beyond syntax, the tests check that the files agree with each other and with eventapp's contract
(probes, token, grace periods, exit codes, paths, selectors).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "kubernetes"
UPGRADE = K8S / "upgrade.sh"
ENTRYPOINT = DEPLOY / "bin" / "eventapp-entrypoint"
SYSTEMD = DEPLOY / "systemd"
JOBMANAGER_UNIT = SYSTEMD / "eventapp-jobmanager.service"
WORKER_UNIT = SYSTEMD / "eventapp-worker@.service"
JOBMANAGER_ENV = SYSTEMD / "jobmanager.env.example"
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"

# The Kubernetes versions the manifests are validated against: the oldest one claimed in
# deploy/README.md, and a recent one.
K8S_VERSIONS = ("1.30.0", "1.33.0")
# A final checkpoint of every split must fit in the stop timeout.
MIN_STOP_SECONDS = 60
REST_PORT = 8081
EXAMPLE_TARGET = "examples.fraud_kafka:build_job"


# ---- helpers -------------------------------------------------------------------------------------


def option(args: list[str], name: str) -> str:
    """The value after ``name`` in an argument list (exactly once)."""
    assert args.count(name) == 1, f"{name} must appear once in {args}"
    index = args.index(name)
    assert index + 1 < len(args), f"{name} has no value in {args}"
    return args[index + 1]


def duration_seconds(text: str | int) -> float:
    """Compose ("2m", "1m30s", "90s") and systemd ("120", "2min", "1min 30s") durations."""
    if isinstance(text, int):
        return float(text)
    units = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|us|min|h|m|s)", text)
    assert parts and re.sub(r"\s", "", "".join(n + u for n, u in parts)) == re.sub(r"\s", "", text), text
    return sum(float(n) * units[u] for n, u in parts)


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def executable_stub(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# ---- Dockerfile ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    name: str
    value: str
    stage: int

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """Leading ``--flag=value`` options (``--mount``, ``--from``, ``--interval``, ...) and the rest."""
        flags: dict[str, str] = {}
        rest = self.value
        while (match := re.match(r"--([a-z-]+)(?:=(\S+))?\s*", rest)) is not None:
            flags[match.group(1)] = match.group(2) or ""
            rest = rest[match.end() :]
        return flags, rest

    def exec_form(self) -> list[str]:
        _, rest = self.flags_and_rest()
        rest = rest.removeprefix("CMD ").strip() if self.name == "HEALTHCHECK" else rest
        assert rest.startswith("["), f"{self.name} must use the exec (JSON) form: {self.value}"
        parsed = json.loads(rest)
        assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
        return parsed


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped; ``stage`` counts FROMs."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue  # comments (and parser directives), also between continuation lines
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends with a line continuation"
    instructions: list[Instruction] = []
    stage = -1
    for line in logical:
        name, _, value = line.partition(" ")
        name = name.upper()
        if name == "FROM":
            stage += 1
        assert stage >= 0 or name == "ARG", f"{name} before the first FROM"
        instructions.append(Instruction(name, value.strip(), stage))
    return instructions


DOCKER = parse_dockerfile(DOCKERFILE.read_text())
STAGES = [i for i in DOCKER if i.name == "FROM"]
FINAL_STAGE = len(STAGES) - 1
RUNTIME = [i for i in DOCKER if i.stage == FINAL_STAGE]


def runtime(name: str) -> list[Instruction]:
    return [i for i in RUNTIME if i.name == name]


def runtime_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in runtime("ENV"):
        for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", instruction.value):
            env[key] = value
    return env


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per pattern, as Docker reads them: cleaned paths, ``*``/``?`` within one
    path element, ``**`` across elements, ``!`` re-includes; the last matching rule wins."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((exclude, re.compile(regex + r"\Z")))
    return rules


def dockerignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves ``path`` out (a rule applies to a path or a parent of it)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for exclude, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = exclude
    return excluded


def test_dockerfile_builds_a_wheel_in_a_builder_stage_and_installs_it_in_python_slim() -> None:
    assert len(STAGES) >= 2, "multi-stage: a builder and a runtime stage"
    builder_from = STAGES[0].value.split()
    assert builder_from[1:] == ["AS", "builder"], STAGES[0].value
    builder_runs = " ".join(i.value for i in DOCKER if i.stage == 0 and i.name == "RUN")
    assert "pip wheel" in builder_runs or "python -m build" in builder_runs
    assert STAGES[-1].value.split()[0] == "python:3.11-slim"
    # The runtime stage takes the wheels from the builder (bind mount or COPY --from) and installs
    # them without an index: what the builder built is what runs.
    from_builder = [
        i
        for i in RUNTIME
        if (i.name == "RUN" and "from=builder" in i.flags_and_rest()[0].get("mount", ""))
        or (i.name == "COPY" and i.flags_and_rest()[0].get("from") == "builder")
    ]
    assert from_builder, "the runtime stage must take the wheels from the builder stage"
    installs = [i for i in runtime("RUN") if "pip install" in i.value]
    assert installs and all("--no-index" in i.value for i in installs), installs


def test_dockerfile_runs_as_a_fixed_non_root_uid() -> None:
    users = runtime("USER")
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].value.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER must be a numeric non-root uid (runAsNonRoot): {uid}"
    assert gid.isdigit() and int(gid) > 0
    # The user is created with that uid, and the last USER comes after every RUN.
    creates = " ".join(i.value for i in runtime("RUN"))
    assert re.search(rf"useradd\b.*--uid {uid}\b", creates), "useradd must create the USER's uid"
    assert RUNTIME.index(users[-1]) > max(RUNTIME.index(i) for i in runtime("RUN"))


def test_dockerfile_exposes_the_rest_port_volumes_healthcheck_and_entrypoint() -> None:
    exposed = [p for i in runtime("EXPOSE") for p in i.value.split()]
    assert str(REST_PORT) in exposed or f"{REST_PORT}/tcp" in exposed
    volumes = [
        v
        for i in runtime("VOLUME")
        for v in (json.loads(i.value) if i.value.startswith("[") else i.value.split())
    ]
    assert {"/checkpoints", "/state"} <= set(volumes)
    env = runtime_env()
    assert env["FRAUD_CHECKPOINT_DIR"] == "/checkpoints" and env["FRAUD_STATE_DIR"] == "/state"
    assert "EVENTAPP_KAFKA_BROKER_QUIRKS" not in env
    # The job code (examples/) is not in the wheel: it must be importable from PYTHONPATH.
    copies_examples = [i for i in runtime("COPY") if i.value.split()[0].rstrip("/") == "examples"]
    assert copies_examples, "the example job's code must be copied into the image"
    examples_dest = copies_examples[0].value.split()[-1].rstrip("/")
    assert Path(examples_dest).parent == Path(env["PYTHONPATH"]), (examples_dest, env["PYTHONPATH"])

    (healthcheck,) = runtime("HEALTHCHECK")
    flags, _ = healthcheck.flags_and_rest()
    assert duration_seconds(flags["timeout"]) < duration_seconds(flags["interval"])
    command = healthcheck.exec_form()
    assert command[0] == "python", "python, not curl: python:3.11-slim has no curl"
    assert env["EVENTAPP_HEALTHCHECK_URL"] == f"http://127.0.0.1:{REST_PORT}/healthz"

    (entrypoint,) = runtime("ENTRYPOINT")
    assert entrypoint.exec_form() == ["eventapp"]
    (cmd,) = runtime("CMD")
    args = cmd.exec_form()
    assert args[:2] == ["run", EXAMPLE_TARGET]
    assert int(option(args, "--parallelism")) >= 1
    assert option(args, "--rest-host") == "0.0.0.0"
    assert int(option(args, "--rest-port")) == REST_PORT
    # Binding 0.0.0.0 needs a token: the file the CMD names is the one the REST clients read too.
    assert option(args, "--rest-token-file") == env["EVENTAPP_REST_TOKEN_FILE"]


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_dockerfile_healthcheck_passes_on_200_and_fails_on_503(health_server: str) -> None:
    (healthcheck,) = runtime("HEALTHCHECK")
    command = [sys.executable, *healthcheck.exec_form()[1:]]

    def run(url: str) -> int:
        env = {**os.environ, "EVENTAPP_HEALTHCHECK_URL": url}
        return subprocess.run(command, env=env, capture_output=True, check=False).returncode

    assert run(f"{health_server}/healthz") == 0
    assert run(f"{health_server}/readyz-not-yet") != 0


def test_docker_build_context_holds_every_copied_file_and_nothing_else() -> None:
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    for instruction in (i for i in DOCKER if i.name == "COPY"):
        flags, rest = instruction.flags_and_rest()
        if "from" in flags:
            continue
        for source in rest.split()[:-1]:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the build context"
            assert not dockerignored(source, rules), f"COPY {source}: excluded by {DOCKERIGNORE.name}"
            files = (
                [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
            )
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                assert not dockerignored(relative, rules), f"{relative} is excluded from the context"
    module = EXAMPLE_TARGET.partition(":")[0].replace(".", "/") + ".py"
    assert not dockerignored(module, rules) and (ROOT / module).is_file()
    for left_out in (".venv/bin/python", ".git/config", "tests/conftest.py", "eventapp/__pycache__/cli.pyc"):
        assert dockerignored(left_out, rules), f"{left_out} should not be sent to the builder"
    for left_out in ("deploy/kubernetes/upgrade.sh", "eventapp.egg-info/PKG-INFO"):
        assert dockerignored(left_out, rules), left_out


def test_entrypoint_wrapper_is_installed_where_kubernetes_and_systemd_call_it() -> None:
    (copy_wrapper,) = [i for i in runtime("COPY") if "deploy/bin/eventapp-entrypoint" in i.value]
    flags, rest = copy_wrapper.flags_and_rest()
    assert rest.split()[-1] == "/usr/local/bin/eventapp-entrypoint"
    assert flags.get("chmod") == "0755"
    assert os.access(ENTRYPOINT, os.X_OK), "deploy/bin/eventapp-entrypoint must be executable in git"
    container = statefulset_container()
    assert container["command"] == ["eventapp-entrypoint"]
    exec_start = unit_values(parse_unit(JOBMANAGER_UNIT.read_text()), "Service", "ExecStart")[0]
    assert exec_start.split()[0] == "/opt/eventapp/bin/eventapp-entrypoint"


# ---- compose ---------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["$schema"].startswith("https://json-schema.org/draft-07/schema")
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_validates_against_the_compose_specification() -> None:
    validator = compose_validator()
    errors = sorted(validator.iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The schema does reject mistakes (an unknown service key, a wrong type).
    broken = compose()
    broken["services"]["jobmanager"]["stop_grace"] = "2m"
    assert list(validator.iter_errors(broken))
    broken = compose()
    broken["services"]["jobmanager"]["depends_on"] = "kafka"
    assert list(validator.iter_errors(broken))


def test_compose_dependencies_exist_and_wait_for_health() -> None:
    services = compose()["services"]
    assert {"kafka", "kafka-init", "redis", "jobmanager"} <= set(services)
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on with conditions, not a list"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck for {name}"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must be one-shot"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition}")
    job = services["jobmanager"]["depends_on"]
    assert job["kafka"]["condition"] == "service_healthy"
    assert job["kafka-init"]["condition"] == "service_completed_successfully"


def test_compose_checkpoints_go_to_the_seaweedfs_service() -> None:
    from eventapp.objectstore.location import ObjectLocation

    services = compose()["services"]
    weed = services["seaweedfs"]
    assert weed["image"].startswith("chrislusf/seaweedfs:")
    assert "-s3" in weed["command"] and "-s3.port=8333" in weed["command"]
    assert weed["volumes"][0].split(":")[0] in compose()["volumes"], "its data on a named volume"
    env = services["jobmanager"]["environment"]
    location = ObjectLocation.parse(env["FRAUD_CHECKPOINT_DIR"])
    assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_REGION"]
    # The bucket is created before the job manager starts, on the same endpoint.
    bucket = services["checkpoint-bucket"]
    assert bucket["environment"]["AWS_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL"]
    assert f'"{location.bucket}"' in bucket["command"][0]
    assert bucket["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    depends = services["jobmanager"]["depends_on"]
    assert depends["checkpoint-bucket"]["condition"] == "service_completed_successfully"
    # RocksDB's working directory and the cache ($TMPDIR/eventapp-objectstore) on one volume.
    mounts = [m.split(":")[1] for m in services["jobmanager"]["volumes"]]
    assert Path(env["TMPDIR"]) in map(Path, mounts)
    assert Path(env["FRAUD_STATE_DIR"]).is_relative_to(env["TMPDIR"])


def test_compose_kafka_is_a_single_kraft_node_fit_for_transactions() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.0"
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID: a base64 UUID"
    mounts = {m.split(":")[1] for m in kafka["volumes"]}
    assert env["KAFKA_LOG_DIRS"] in mounts, "Kafka's log must outlive the container, like the checkpoints"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    job_env = services["jobmanager"]["environment"]
    assert f"PLAINTEXT://{job_env['FRAUD_BOOTSTRAP']}" in advertised


def test_compose_init_creates_the_jobs_topics_with_enough_partitions() -> None:
    services = compose()["services"]
    init = services["kafka-init"]
    assert init["image"] == services["kafka"]["image"]
    script = "\n".join(init["command"])
    assert "kafka-topics.sh" in script and "--create" in script and "--if-not-exists" in script
    topics = dict(re.findall(r"([A-Za-z0-9._-]+):(\d+)", script.split("do")[0]))
    env = services["jobmanager"]["environment"]
    for key in ("FRAUD_TRANSACTIONS", "FRAUD_ALERTS", "FRAUD_DEAD_LETTERS"):
        assert env[key] in topics, f"{key}={env[key]} is not created by kafka-init"
    # One split per input partition: more slots than splits is a usage error (exit 2).
    parallelism = int(option(services["jobmanager"]["command"], "--parallelism"))
    assert 1 <= parallelism <= int(topics[env["FRAUD_TRANSACTIONS"]])


def test_compose_job_runs_the_job_manager_with_a_token_volumes_and_a_grace_period() -> None:
    spec = compose()
    job = spec["services"]["jobmanager"]
    context = (COMPOSE.parent / job["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / job["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert job["entrypoint"] == ["eventapp-entrypoint"]
    args = [str(a) for a in job["command"]]
    assert args[:2] == ["run", EXAMPLE_TARGET]
    assert option(args, "--rest-host") == "0.0.0.0"
    assert int(option(args, "--rest-port")) == REST_PORT
    token_file = option(args, "--rest-token-file")
    assert token_file.startswith("/run/secrets/")
    secret = token_file.removeprefix("/run/secrets/")
    assert secret in job["secrets"] and secret in spec["secrets"]
    secret_file = spec["secrets"][secret]["file"]
    assert Path(secret_file).name in (COMPOSE.parent / ".gitignore").read_text().split(), "never commit it"
    assert duration_seconds(job["stop_grace_period"]) >= MIN_STOP_SECONDS
    assert job.get("stop_signal", "SIGTERM") == "SIGTERM"
    env = job["environment"]
    assert "EVENTAPP_KAFKA_BROKER_QUIRKS" not in env, "must stay unset for Apache Kafka"
    assert env["EVENTAPP_FROM_SAVEPOINT"] == "${EVENTAPP_FROM_SAVEPOINT:-}", "empty unless given"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in job["volumes"]}
    assert mounts["/savepoints"] in spec["volumes"], "savepoints on a named volume"
    assert Path(env["FRAUD_STATE_DIR"]).parent in map(Path, mounts)
    for service in spec["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source.startswith((".", "/")) or source in spec["volumes"], source
    health = " ".join(job["healthcheck"]["test"])
    assert f"127.0.0.1:{REST_PORT}/healthz" in health
    assert job["ports"] == [f"127.0.0.1:{REST_PORT}:{REST_PORT}"]


# ---- Kubernetes ---------------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for resource in kustomization()["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / resource).read_text()) if d)
    return docs


def secret_examples() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d]


def secret_example(name: str = "eventapp-rest-token") -> dict[str, Any]:
    (found,) = [d for d in secret_examples() if d["metadata"]["name"] == name]
    return found


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s_documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def statefulset_container() -> dict[str, Any]:
    (container,) = one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return container


def configmap_data() -> dict[str, str]:
    container = statefulset_container()
    (source,) = container["envFrom"]
    data: dict[str, str] = one("ConfigMap", source["configMapRef"]["name"])["data"]
    return data


def test_kustomization_lists_every_manifest() -> None:
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(listed) == on_disk
    assert "namespace" not in kustomization(), "namespace-less: the namespace is the user's choice"
    for doc in [*k8s_documents(), *secret_examples()]:
        assert "namespace" not in doc["metadata"], doc["metadata"]["name"]


def kubernetes_validate(version: str, files: list[Path], cwd: Path) -> tuple[int, list[str]]:
    """Run ``kubernetes-validate --strict`` (strict: unknown fields fail) in its own process.

    Not imported here: it imports ``packaging``, which ``tests/packaging`` (collected as the top-level
    package ``packaging``) shadows in pytest's process.
    """
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )
    return result.returncode, (result.stdout + result.stderr).splitlines()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_strictly_against_the_schema(version: str, tmp_path: Path) -> None:
    files = [K8S / r for r in kustomization()["resources"]] + [K8S / "secret.example.yaml"]
    returncode, lines = kubernetes_validate(version, files, tmp_path)
    assert returncode == 0, "\n".join(lines)
    # Every object has a schema (an unknown kind or apiVersion is only a warning) and passed.
    passed = [line for line in lines if line.startswith("INFO ") and " passed for resource " in line]
    expected = len(k8s_documents()) + len(secret_examples())
    assert len(passed) == expected and len(passed) == len(lines), "\n".join(lines)
    assert all(line.endswith(f"against version {version.rsplit('.', 1)[0]}") for line in passed), lines


@pytest.mark.parametrize(
    "breakage",
    ["unknown container field", "grace period as a string", "probe port missing"],
)
def test_kubernetes_validation_rejects_broken_manifests(breakage: str, tmp_path: Path) -> None:
    broken = copy.deepcopy(one("StatefulSet"))
    pod = broken["spec"]["template"]["spec"]
    if breakage == "unknown container field":
        pod["containers"][0]["livenesProbe"] = pod["containers"][0].pop("livenessProbe")
    elif breakage == "grace period as a string":
        pod["terminationGracePeriodSeconds"] = "120"
    else:
        del pod["containers"][0]["readinessProbe"]["httpGet"]["port"]
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump(broken))
    returncode, lines = kubernetes_validate(K8S_VERSIONS[0], [manifest], tmp_path)
    assert returncode != 0 and any(line.startswith("ERROR ") for line in lines), lines


def test_kustomize_renders_the_same_objects_when_kubectl_is_present() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` not checked")
    rendered = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    names = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered.stdout) if d)
    assert names == sorted((d["kind"], d["metadata"]["name"]) for d in k8s_documents())


def test_statefulset_runs_one_job_manager_with_slots_and_a_token() -> None:
    sts = one("StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 1, "one job manager: a second one would fence the first (exit 3)"
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    headless = one("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert labels_match(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])

    container = statefulset_container()
    args = container["args"]
    assert args[0] == "run"
    assert option(args, "--rest-host") == "0.0.0.0"
    assert int(option(args, "--rest-port")) == REST_PORT
    # Every $(VAR) of the arguments is defined: the ConfigMap, or the container's own env.
    env = {e["name"]: e.get("value") for e in container["env"]}
    data = configmap_data()
    for reference in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(args)):
        assert reference in data or reference in env, f"$({reference}) is not defined"
    assert option(args, "--parallelism") == "$(EVENTAPP_PARALLELISM)"
    assert int(data["EVENTAPP_PARALLELISM"]) >= 1
    assert args[1] == "$(EVENTAPP_JOB)" and data["EVENTAPP_JOB"] == EXAMPLE_TARGET
    assert "EVENTAPP_KAFKA_BROKER_QUIRKS" not in data and "EVENTAPP_KAFKA_BROKER_QUIRKS" not in env
    # upgrade.sh patches this variable; it must exist (empty) for the strategic merge to update it.
    assert env["EVENTAPP_FROM_SAVEPOINT"] == ""

    # The token file lies in the mounted Secret, under the key of secret.example.yaml.
    token_file = Path(option(args, "--rest-token-file"))
    assert env["EVENTAPP_REST_TOKEN_FILE"] == str(token_file)
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == token_file.parent]
    assert mount.get("readOnly") is True
    secret = secret_example()
    assert volumes[mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    assert token_file.name in secret["stringData"]


def test_statefulset_probes_grace_period_and_ports() -> None:
    pod = one("StatefulSet")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= MIN_STOP_SECONDS
    assert pod["enableServiceLinks"] is False, "Service links would inject EVENTAPP_* variables"
    container = statefulset_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": REST_PORT}
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "a generous startup probe"
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30


def test_statefulset_is_non_root_read_only_with_scratch_and_persistent_volumes() -> None:
    sts = one("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    container = statefulset_container()
    (user,) = runtime("USER")
    uid, _, gid = user.value.partition(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid), "the image's USER"
    assert pod["securityContext"]["fsGroup"] == int(gid)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]

    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    data = configmap_data()
    assert data["FRAUD_CHECKPOINT_DIR"].startswith("s3://"), "checkpoints in the object store"
    assert mounts["/savepoints"] in claims, "savepoints (local paths) on the persistent volume"
    assert Path(data["EVENTAPP_UPGRADE_HOLD_FILE"]).parent == Path("/savepoints"), "the hold outlives the pod"
    for scratch in ("/state", "/tmp"):
        assert "emptyDir" in volumes[mounts[scratch]], f"{scratch}: an emptyDir"
    assert set(mounts.values()) == set(volumes) | claims, "every volume mounted, every mount defined"


def mount_of(path: str, mounts: list[dict[str, Any]]) -> str:
    """The mount path that holds ``path`` (the longest prefix)."""
    holding = [m["mountPath"] for m in mounts if Path(path).is_relative_to(m["mountPath"])]
    assert holding, f"{path} is on no mounted volume (the root file system is read-only)"
    return max(holding, key=len)


def test_kubernetes_checkpoints_default_to_the_object_store_with_credentials_from_a_secret() -> None:
    from eventapp.objectstore.location import ObjectLocation

    data = configmap_data()
    container = statefulset_container()
    location = ObjectLocation.parse(data["FRAUD_CHECKPOINT_DIR"])  # what CheckpointConfig accepts
    assert location.bucket and location.prefix, "s3://bucket/prefix"
    assert data["AWS_ENDPOINT_URL"].startswith(("http://", "https://"))
    assert data["AWS_REGION"]
    # Credentials never in the ConfigMap: from the Secret of secret.example.yaml, by key.
    for key in data:
        assert "SECRET" not in key and "ACCESS_KEY" not in key, f"{key}: credentials belong in a Secret"
    env = {e["name"]: e for e in container["env"]}
    secret = secret_example("eventapp-s3-credentials")
    assert secret["type"] == "Opaque"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key], f"{key}: from the Secret, not a literal"
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": key}
        assert key in secret["stringData"]
    assert "eventapp-s3-credentials" not in (K8S / "kustomization.yaml").read_text().split("resources:")[1]
    # RocksDB's working directory and the cache ($TMPDIR/eventapp-objectstore/...) on one mount (hard
    # links), an emptyDir: scratch, restored from the bucket.
    mounts = container["volumeMounts"]
    state_mount = mount_of(data["FRAUD_STATE_DIR"], mounts)
    assert mount_of(data["TMPDIR"], mounts) == state_mount
    volumes = {v["name"]: v for v in one("StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    (state,) = [m["name"] for m in mounts if m["mountPath"] == state_mount]
    assert "emptyDir" in volumes[state]
    # Nothing of the checkpoints is on a persistent volume any more.
    claims = {c["metadata"]["name"] for c in one("StatefulSet")["spec"]["volumeClaimTemplates"]}
    assert claims == {"savepoints"}


def test_services_and_budget_select_the_job_manager_pod() -> None:
    labels = one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    service = one("Service", "eventapp")
    assert labels_match(service["spec"]["selector"], labels)
    assert labels_match(one("Service", "eventapp-headless")["spec"]["selector"], labels)
    (port,) = service["spec"]["ports"]
    assert port == {"name": "http", "port": REST_PORT, "targetPort": "http", "protocol": "TCP"}
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(REST_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    pdb = one("PodDisruptionBudget")["spec"]
    assert labels_match(pdb["selector"]["matchLabels"], labels)
    assert pdb.get("maxUnavailable") == 0 or pdb.get("minAvailable") == 1
    assert not ("maxUnavailable" in pdb and "minAvailable" in pdb)


# ---- upgrade.sh and the entrypoint wrapper ------------------------------------------------------


def test_shell_scripts_parse_and_pass_shellcheck() -> None:
    for command in (["bash", "-n", str(UPGRADE)], ["sh", "-n", str(ENTRYPOINT)]):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    assert UPGRADE.read_text().splitlines()[:1] == ["#!/usr/bin/env bash"]
    assert "set -euo pipefail" in UPGRADE.read_text()
    assert os.access(UPGRADE, os.X_OK)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck): only bash -n / sh -n ran")
    result = subprocess.run(
        [shellcheck, str(UPGRADE), str(ENTRYPOINT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


STUB_KUBECTL = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if "--" in args:
    command = args[args.index("--") + 1 :]
    mode = os.environ.get("STUB_STOP", "print")
    if command[:2] == ["eventapp-entrypoint", "stop"]:
        target = command[command.index("--savepoint") + 1]
        if mode == "print":
            print("Path: " + target + "/savepoint-0042")
            sys.exit(0)
        sys.exit(137 if mode == "cut" else 1)
    if command[:1] == ["find"]:
        if mode == "cut":
            print(command[1] + "/savepoint-0043")
        sys.exit(0)
if args[:2] == ["rollout", "status"] and os.environ.get("STUB_ROLLOUT") == "fail":
    sys.exit(1)
sys.exit(0)
"""


@dataclass
class UpgradeRun:
    returncode: int
    stderr: str
    calls: list[list[str]]

    def call(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.calls if c[: len(prefix)] == list(prefix)]

    def in_pod(self, *command: str) -> list[list[str]]:
        return [
            c for c in self.calls if "--" in c and c[c.index("--") + 1 :][: len(command)] == list(command)
        ]


def run_upgrade(tmp_path: Path, *args: str, **env: str) -> UpgradeRun:
    stub = executable_stub(tmp_path / "kubectl", STUB_KUBECTL.format(python=sys.executable))
    log = tmp_path / "kubectl.log"
    log.write_text("")
    environment = {k: v for k, v in os.environ.items() if k != "NAMESPACE"}
    environment.update(KUBECTL=str(stub), STUB_LOG=str(log), **env)
    result = subprocess.run(
        ["bash", str(UPGRADE), *args], env=environment, capture_output=True, text=True, check=False
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return UpgradeRun(result.returncode, result.stderr, calls)


def test_upgrade_holds_stops_with_a_savepoint_and_patches_image_and_savepoint_at_once(tmp_path: Path) -> None:
    run = run_upgrade(tmp_path, "registry.example/eventapp:0.2.0")
    assert run.returncode == 0, run.stderr
    container = statefulset_container()
    pod = f"{one('StatefulSet')['metadata']['name']}-0"
    assert run.calls[0][:3] == ["wait", "--for=condition=Ready", f"pod/{pod}"]
    (hold,) = run.in_pod("eventapp-entrypoint", "hold")
    assert hold[:4] == ["exec", pod, "-c", container["name"]]
    (stop,) = run.in_pod("eventapp-entrypoint", "stop")
    stop_args = stop[stop.index("--") + 1 :]
    assert stop_args[2] == "fraud-detection"
    target = option(stop_args, "--savepoint")
    assert re.fullmatch(r"/savepoints/upgrade-\d{8}T\d{6}Z", target)
    claims = {c["metadata"]["name"] for c in one("StatefulSet")["spec"]["volumeClaimTemplates"]}
    mounts = container["volumeMounts"]
    holding = mount_of(target, mounts)
    assert next(m["name"] for m in mounts if m["mountPath"] == holding) in claims, "on a persistent volume"
    assert option(stop_args, "--rest-url") == f"http://127.0.0.1:{REST_PORT}"
    assert "--drain" not in stop_args
    assert run.calls.index(hold) < run.calls.index(stop)

    (patch,) = run.call("patch", "statefulset", "eventapp")
    body = json.loads(option(patch, "--patch"))
    assert option(patch, "--type") == "strategic"
    (patched,) = body["spec"]["template"]["spec"]["containers"]
    assert patched["name"] == container["name"]
    assert patched["image"] == "registry.example/eventapp:0.2.0"
    assert patched["env"] == [{"name": "EVENTAPP_FROM_SAVEPOINT", "value": f"{target}/savepoint-0042"}]
    (rollout,) = run.call("rollout", "status")
    assert run.calls.index(stop) < run.calls.index(patch) < run.calls.index(rollout)
    assert not run.in_pod("eventapp-entrypoint", "release"), "the new pod lifts the hold, not the script"


def test_upgrade_passes_drain_and_namespace(tmp_path: Path) -> None:
    run = run_upgrade(tmp_path, "eventapp:0.2.0", "--drain", NAMESPACE="streaming")
    assert run.returncode == 0, run.stderr
    assert all(call[:2] == ["--namespace", "streaming"] for call in run.calls), run.calls
    (stop,) = run.in_pod("eventapp-entrypoint", "stop")
    assert "--drain" in stop


def test_upgrade_finds_the_savepoint_when_the_exec_is_cut_off(tmp_path: Path) -> None:
    run = run_upgrade(tmp_path, "eventapp:0.2.0", STUB_STOP="cut")
    assert run.returncode == 0, run.stderr
    (find,) = run.in_pod("find")
    (patch,) = run.call("patch")
    env = json.loads(option(patch, "--patch"))["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["value"] == find[find.index("--") + 2] + "/savepoint-0043"


def test_upgrade_that_gets_no_savepoint_releases_the_hold_and_patches_nothing(tmp_path: Path) -> None:
    run = run_upgrade(tmp_path, "eventapp:0.2.0", STUB_STOP="fail")
    assert run.returncode == 1
    assert run.in_pod("eventapp-entrypoint", "release")
    assert not run.call("patch") and not run.call("rollout")


def test_upgrade_whose_new_pod_is_not_ready_keeps_the_hold(tmp_path: Path) -> None:
    run = run_upgrade(tmp_path, "eventapp:0.2.0", STUB_ROLLOUT="fail")
    assert run.returncode == 1
    assert run.call("patch"), "the new version was applied"
    assert not run.in_pod("eventapp-entrypoint", "release"), "releasing would let the old spec run again"
    assert "not ready" in run.stderr


@pytest.mark.parametrize("args", [(), ("eventapp:0.2.0", "--force"), ('eventapp:"0.2"',)])
def test_upgrade_usage_errors_touch_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    run = run_upgrade(tmp_path, *args)
    assert run.returncode == 2
    assert run.calls == []


STUB_EVENTAPP = """#!/bin/sh
printf '%s\\n' "$@" > "$STUB_OUT"
printf '%s' "${EVENTAPP_REST_TOKEN:-}" > "$STUB_OUT.token"
"""


@pytest.fixture
def wrapper_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable_stub(bin_dir / "eventapp", STUB_EVENTAPP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTAPP_")}
    return {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}",
        "STUB_OUT": str(tmp_path / "eventapp.args"),
        "EVENTAPP_UPGRADE_HOLD_FILE": str(tmp_path / "hold"),
        "EVENTAPP_UPGRADE_HOLD_POLL_SECONDS": "0.05",
    }


def wrapper(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, check=False
    )


def stub_args(env: dict[str, str]) -> list[str]:
    return Path(env["STUB_OUT"]).read_text().splitlines()


def test_wrapper_adds_the_savepoint_from_the_environment(wrapper_env: dict[str, str]) -> None:
    run_args = ["run", EXAMPLE_TARGET, "--parallelism", "4"]
    assert wrapper(wrapper_env, *run_args).returncode == 0
    assert stub_args(wrapper_env) == run_args
    env = {**wrapper_env, "EVENTAPP_FROM_SAVEPOINT": "/checkpoints/savepoints/sp 1"}
    assert wrapper(env, *run_args).returncode == 0
    assert stub_args(env) == [*run_args, "--from-savepoint", "/checkpoints/savepoints/sp 1"]
    Path(env["STUB_OUT"]).unlink()
    refused = wrapper(env, *run_args, "--from-checkpoint", "/checkpoints/x")
    assert refused.returncode == 2 and "EVENTAPP_FROM_SAVEPOINT" in refused.stderr
    assert not Path(env["STUB_OUT"]).exists()


def test_wrapper_gives_rest_clients_the_token_but_not_the_server(
    wrapper_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("s3cret")
    env = {**wrapper_env, "EVENTAPP_REST_TOKEN_FILE": str(tmp_path / "token")}
    assert wrapper(env, "stop", "fraud-detection", "--savepoint", "/checkpoints/sp").returncode == 0
    assert stub_args(env) == ["stop", "fraud-detection", "--savepoint", "/checkpoints/sp"]
    assert Path(env["STUB_OUT"] + ".token").read_text() == "s3cret"
    assert wrapper(env, "run", EXAMPLE_TARGET, "--rest-token-file", str(tmp_path / "token")).returncode == 0
    assert Path(env["STUB_OUT"] + ".token").read_text() == ""


def test_wrapper_hold_is_lifted_by_a_new_savepoint(wrapper_env: dict[str, str]) -> None:
    assert wrapper(wrapper_env, "hold").returncode == 0
    assert Path(wrapper_env["EVENTAPP_UPGRADE_HOLD_FILE"]).read_text() == "\n"
    env = {**wrapper_env, "EVENTAPP_FROM_SAVEPOINT": "/checkpoints/savepoints/new"}
    assert wrapper(env, "run", EXAMPLE_TARGET).returncode == 0
    assert stub_args(env) == ["run", EXAMPLE_TARGET, "--from-savepoint", "/checkpoints/savepoints/new"]
    assert not Path(env["EVENTAPP_UPGRADE_HOLD_FILE"]).exists()


def start_held(env: dict[str, str]) -> subprocess.Popen[str]:
    assert wrapper(env, "hold").returncode == 0
    held = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "run", EXAMPLE_TARGET], env=env, stderr=subprocess.PIPE, text=True
    )
    assert held.stderr is not None
    first = held.stderr.readline()
    assert "waiting for the new pod spec" in first, first
    return held


def test_wrapper_hold_keeps_the_old_spec_from_running_until_released(wrapper_env: dict[str, str]) -> None:
    held = start_held(wrapper_env)
    try:
        assert not Path(wrapper_env["STUB_OUT"]).exists(), "the old version must not start"
        assert wrapper(wrapper_env, "release").returncode == 0
        assert held.wait() == 0
    finally:
        if held.poll() is None:
            held.kill()
            held.wait()
    assert stub_args(wrapper_env) == ["run", EXAMPLE_TARGET]


def test_wrapper_hold_ends_at_sigterm_without_running(wrapper_env: dict[str, str]) -> None:
    held = start_held(wrapper_env)
    held.send_signal(signal.SIGTERM)
    assert held.wait() == 143
    assert not Path(wrapper_env["STUB_OUT"]).exists()
    assert Path(wrapper_env["EVENTAPP_UPGRADE_HOLD_FILE"]).exists(), "the hold stays for the new pod"


# ---- systemd ---------------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file, each a list of (key, value) in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def unit_value(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    values = unit_values(unit, section, key)
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def env_file(path: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), line
            entries[key] = value
    return entries


def test_jobmanager_unit_stops_gracefully_and_respects_superseded() -> None:
    unit = parse_unit(JOBMANAGER_UNIT.read_text())
    assert unit_value(unit, "Service", "KillSignal") == "SIGTERM"
    assert unit_value(unit, "Service", "KillMode") == "mixed", "SIGTERM to the job manager, not its workers"
    assert duration_seconds(unit_value(unit, "Service", "TimeoutStopSec")) >= MIN_STOP_SECONDS
    assert unit_value(unit, "Service", "Restart") == "on-failure"
    assert "3" in unit_value(unit, "Service", "RestartPreventExitStatus").split()
    assert unit_value(unit, "Service", "User") == "eventapp"
    assert unit_value(unit, "Service", "EnvironmentFile") == "/etc/eventapp/jobmanager.env"
    assert unit_value(unit, "Install", "WantedBy") == "multi-user.target"


def test_jobmanager_unit_command_is_defined_by_the_example_env_file() -> None:
    unit = parse_unit(JOBMANAGER_UNIT.read_text())
    env = env_file(JOBMANAGER_ENV)
    exec_start = unit_value(unit, "Service", "ExecStart").split()
    assert exec_start[1] == "run"
    assert option(exec_start, "--parallelism") == "${EVENTAPP_PARALLELISM}"
    assert int(env["EVENTAPP_PARALLELISM"]) >= 1
    assert "--subtask" not in exec_start, "the job manager runs every slot itself"
    for braced, bare in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)", " ".join(exec_start)):
        assert (braced or bare) in env, f"${braced or bare} is not in {JOBMANAGER_ENV.name}"
        assert not braced or env[braced], f"{braced} must not be empty (one argument each)"
    assert env["EVENTAPP_REST_HOST"] in ("127.0.0.1", "::1", "localhost"), "loopback needs no token"
    assert "EVENTAPP_KAFKA_BROKER_QUIRKS" not in env
    assert env["EVENTAPP_FROM_SAVEPOINT"] == ""


def test_jobmanager_unit_is_hardened_and_can_write_checkpoints_and_state() -> None:
    unit = parse_unit(JOBMANAGER_UNIT.read_text())
    env = env_file(JOBMANAGER_ENV)
    assert unit_value(unit, "Service", "ProtectSystem") == "strict"
    assert unit_value(unit, "Service", "NoNewPrivileges") == "yes"
    assert unit_value(unit, "Service", "PrivateTmp") == "yes"
    writable = [Path(p) for v in unit_values(unit, "Service", "ReadWritePaths") for p in v.split()]
    for key in ("FRAUD_CHECKPOINT_DIR", "FRAUD_STATE_DIR"):
        assert any(Path(env[key]).is_relative_to(w) for w in writable), f"{key}={env[key]} is read-only"


def test_worker_unit_is_kept() -> None:
    unit = parse_unit(WORKER_UNIT.read_text())
    exec_start = unit_value(unit, "Service", "ExecStart").split()
    assert option(exec_start, "--subtask") == "%i"
    assert "3" in unit_value(unit, "Service", "RestartPreventExitStatus").split()
    assert unit_value(unit, "Service", "KillSignal") == "SIGTERM"
    assert duration_seconds(unit_value(unit, "Service", "TimeoutStopSec")) >= MIN_STOP_SECONDS


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed: units only checked by parsing")
    return path


def units_with_stub_commands(tmp_path: Path) -> list[Path]:
    """The units, with their executables pointed at a stub (verify requires the command to exist)."""
    stub = executable_stub(tmp_path / "eventapp-stub", "#!/bin/sh\n")
    units = []
    for unit in (JOBMANAGER_UNIT, WORKER_UNIT):
        text = re.sub(r"^(ExecStart=)(\S+)", rf"\g<1>{stub}", unit.read_text(), flags=re.MULTILINE)
        copied = tmp_path / unit.name
        copied.write_text(text)
        units.append(copied)
    return units


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    jobmanager, worker = units_with_stub_commands(tmp_path)
    instance = tmp_path / worker.name.replace("@.", "@0.")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(jobmanager), str(instance)],
        capture_output=True,
        text=True,
        check=False,
    )
    # verify reports unknown keys and bad values as warnings only: any output about the units fails.
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "eventapp" in line or str(tmp_path) in line
    ]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_systemd_security_exposure_of_the_job_manager_is_low(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    jobmanager, _ = units_with_stub_commands(tmp_path)
    # --threshold is in tenths: 20 = exposure 2.0 ("OK"); the worker unit, unhardened, is 9.2.
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", str(jobmanager)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# ---- the command lines against eventapp's own parser ---------------------------------------------


def parse_eventapp(args: list[str]) -> argparse.Namespace:
    """``eventapp``'s argument parser on ``args`` (a usage error fails the test with its message)."""
    from eventapp.cli import _parser

    try:
        return _parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"eventapp rejects {args} (exit {exc.code})")


def job_manager_command_lines() -> dict[str, list[str]]:
    """Each deployment's ``eventapp`` arguments, variables filled in as their runtime would."""
    (cmd,) = runtime("CMD")
    data = configmap_data()
    k8s_args = [
        re.sub(r"\$\(([A-Z_0-9]+)\)", lambda m: data[m.group(1)], a) for a in statefulset_container()["args"]
    ]
    env = env_file(JOBMANAGER_ENV)
    exec_start = unit_value(parse_unit(JOBMANAGER_UNIT.read_text()), "Service", "ExecStart").split()
    systemd_args: list[str] = []
    for arg in exec_start[1:]:
        if arg.startswith("$") and not arg.startswith("${"):
            systemd_args.extend(env[arg[1:]].split())  # $VAR: split into zero or more words
        else:
            systemd_args.append(re.sub(r"\$\{([A-Z_0-9]+)\}", lambda m: env[m.group(1)], arg))
    return {
        "Dockerfile CMD": cmd.exec_form(),
        "compose": [str(a) for a in compose()["services"]["jobmanager"]["command"]],
        "kubernetes": k8s_args,
        "systemd": systemd_args,
    }


@pytest.mark.parametrize("deployment", ["Dockerfile CMD", "compose", "kubernetes", "systemd"])
def test_job_manager_command_lines_are_accepted_by_eventapp(deployment: str) -> None:
    from eventapp.daemon.restart import parse_restart_strategy

    args = job_manager_command_lines()[deployment]
    parsed = parse_eventapp(args)
    assert parsed.command == "run" and parsed.target == EXAMPLE_TARGET
    assert parsed.parallelism >= 1 and parsed.subtask is None and parsed.splits is None, "a job manager"
    assert parsed.rest_port == REST_PORT
    assert parsed.json_logs is True
    if parsed.rest_host not in ("127.0.0.1", "::1", "localhost"):
        assert parsed.rest_token_file is not None, "a non-loopback REST host needs a token"
    parse_restart_strategy(parsed.restart_strategy)
    # What eventapp-entrypoint adds for EVENTAPP_FROM_SAVEPOINT is accepted beside it.
    with_savepoint = parse_eventapp([*args, "--from-savepoint", "/checkpoints/savepoints/savepoint-1"])
    assert str(with_savepoint.from_savepoint) == "/checkpoints/savepoints/savepoint-1"


def test_documented_restart_strategies_parse() -> None:
    from eventapp.daemon.restart import parse_restart_strategy

    documented = set()
    for path in (K8S / "configmap.yaml", JOBMANAGER_ENV, DEPLOY / "README.md"):
        documented |= set(
            re.findall(
                r"\b((?:fixed-delay|failure-rate):[\w=,.-]+\w|exponential-delay|none)\b", path.read_text()
            )
        )
    assert "exponential-delay" in documented and any(s.startswith("fixed-delay:") for s in documented)
    for spec in documented:
        parse_restart_strategy(spec)


def test_worker_unit_and_upgrade_commands_are_accepted_by_eventapp(tmp_path: Path) -> None:
    exec_start = unit_value(parse_unit(WORKER_UNIT.read_text()), "Service", "ExecStart").split()
    values = {"EVENTAPP_JOB": EXAMPLE_TARGET, "PARALLELISM": "4"}
    worker = [
        re.sub(r"\$\{([A-Z_0-9]+)\}", lambda m: values[m.group(1)], a).replace("%i", "2")
        for a in exec_start[1:]
    ]
    parsed = parse_eventapp(worker)
    assert (parsed.parallelism, parsed.subtask) == (4, 2)
    for extra in ((), ("--drain",)):
        run = run_upgrade(tmp_path, "eventapp:0.2.0", *extra)
        (stop,) = run.in_pod("eventapp-entrypoint", "stop")
        parsed = parse_eventapp(stop[stop.index("--") + 2 :])
        assert parsed.command == "stop" and parsed.savepoint and parsed.drain == bool(extra)


def test_the_example_jobs_name_is_the_one_upgrade_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventapp.cli import load_job

    monkeypatch.setenv("FRAUD_BOOTSTRAP", "kafka:9092")
    job = load_job(EXAMPLE_TARGET)
    default = re.search(r'job="\$\{JOB_NAME:-([^}]+)\}"', UPGRADE.read_text())
    assert default is not None and job.name == default.group(1)


# ---- README --------------------------------------------------------------------------------------


def test_readme_names_existing_files_and_has_no_python_blocks() -> None:
    text = (DEPLOY / "README.md").read_text()
    assert "```python" not in text, "ruff format --check would format python blocks"
    # Files the user creates (never committed) are listed in a .gitignore beside them.
    created = {
        (p.parent / name).relative_to(ROOT).as_posix()
        for p in DEPLOY.rglob(".gitignore")
        for name in p.read_text().split()
    }
    for path in set(re.findall(r"(?<![\w/])deploy/[\w@./-]*[\w@]", text)) - created:
        assert (ROOT / path).exists(), f"deploy/README.md names {path}, which does not exist"
    for command in (
        "docker build -f deploy/docker/Dockerfile",
        "docker compose",
        "kubectl apply -k",
        "systemctl",
    ):
        assert command in text, command
