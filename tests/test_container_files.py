"""The container files (Dockerfile, compose.yaml, deploy.env.example) against the code.

No container runtime runs on the test machine, so the image itself is never built here.
What is checked instead is what can drift without one: the image's CMD and HEALTHCHECK,
run as written against a real `serve` (embedded Redis in DATA_DIR, simulator as Simpro),
and every variable the files set being a setting the service reads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from simpro_counter.settings import Settings
from simpro_counter.simulator import RunningSimulator, SimulatorConfig, running_simulator
from tests.service_fixtures import free_port, stop_process, wait_until_counted

ROOT = Path(__file__).resolve().parent.parent
# Variables the files may set that are the Python runtime's or pip's, not the service's.
RUNTIME_VARIABLES = {
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
}
SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(None, 1) for line in lines if line and not line.startswith("#"))
    ]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    """ENV of the final stage (`ENV A=1 B=2` form)."""
    env: dict[str, str] = {}
    for name, args in final_stage():
        if name == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def exec_form(name: str) -> list[str]:
    """The JSON argv of the final stage's CMD, or of HEALTHCHECK's CMD (after its options)."""
    (args,) = [args for instr, args in final_stage() if instr == name]
    argv: list[str] = json.loads(args[args.index("[") :])
    return argv


@dataclass(frozen=True)
class ComposeService:
    name: str
    environment: dict[str, str]
    lines: list[str]


def compose_services() -> dict[str, ComposeService]:
    """A stdlib reading of compose.yaml, just enough for its services and environment maps
    (no YAML library is a dependency): services are the 2-space keys under `services:`."""
    services: dict[str, ComposeService] = {}
    section = current = None
    in_environment = False
    for raw in (ROOT / "compose.yaml").read_text().splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            section, current = line.rstrip(":"), None
            continue
        if section != "services":
            continue
        if indent == 2:
            current = ComposeService(line.strip().rstrip(":"), {}, [])
            services[current.name] = current
            continue
        assert current is not None
        current.lines.append(line.strip())
        if indent == 4:
            in_environment = line.strip() == "environment:"
        elif in_environment and indent == 6:
            key, value = line.strip().split(":", 1)
            current.environment[key] = value.strip().strip('"')
    return services


def env_file_names(path: Path) -> set[str]:
    """Variable names of a KEY=value file, commented-out ones included."""
    names = set()
    for line in path.read_text().splitlines():
        match = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=", line.strip())
        if match:
            names.add(match.group(1))
    return names


# --- the files name only settings the service reads -------------------------------------


def test_every_variable_the_dockerfile_sets_is_a_setting_or_the_runtimes() -> None:
    names = set(dockerfile_env())
    assert {"HOST", "PORT", "DATA_DIR"} <= names
    assert names - SETTINGS_VARIABLES - RUNTIME_VARIABLES == set()


def test_every_variable_compose_and_its_env_file_set_is_a_setting() -> None:
    counter = compose_services()["counter"]
    assert "env_file: deploy.env" in counter.lines
    example = env_file_names(ROOT / "deploy.env.example")
    assert {"SIMPRO_BASE_URL", "SIMPRO_API_KEY", "ADMIN_TOKEN"} <= example
    assert (set(counter.environment) | example) - SETTINGS_VARIABLES == set()


def test_compose_points_the_service_at_its_append_only_redis() -> None:
    services = compose_services()
    url = httpx.URL(services["counter"].environment["REDIS_URL"])
    assert url.scheme == "redis"
    assert url.host in services
    redis = services[url.host]
    command = next(line for line in redis.lines if line.startswith("command:"))
    assert '"--appendonly", "yes"' in command
    assert any(line.startswith("- redis-data:/data") for line in redis.lines)
    assert "healthcheck:" in redis.lines
    assert "condition: service_healthy" in services["counter"].lines


def test_the_image_listens_on_every_interface_as_a_user_on_its_volume() -> None:
    env = dockerfile_env()
    stage = final_stage()
    assert env["HOST"] == "0.0.0.0"  # the setting's default, 127.0.0.1, is unreachable
    assert Settings.model_fields["host"].default == "127.0.0.1"
    assert ("EXPOSE", env["PORT"]) in stage
    volumes = [json.loads(args) for name, args in stage if name == "VOLUME"]
    assert [env["DATA_DIR"]] in volumes
    users = [args for name, args in stage if name == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    assert exec_form("CMD") == ["simpro-counter", "serve"]
    assert "/healthz" in " ".join(exec_form("HEALTHCHECK"))


def test_the_uid_docs_deploy_tells_volumes_to_allow_is_the_images() -> None:
    (uid,) = re.findall(r"--uid (\d+)", dict(final_stage())["RUN"])
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert set(re.findall(r"\b(?:UID |runAsUser: |fsGroup: |chown )(\d+)", docs)) == {uid}


# --- the image's CMD and HEALTHCHECK, run as written on this machine --------------------


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(invoices=300, customers=80, seed=5, rate=0)
    with running_simulator(config) as running:
        yield running


@dataclass(frozen=True)
class Image:
    """The service started the way the image starts it, and the environment it has."""

    url: str
    env: dict[str, str]
    data_dir: Path


def image_environment(**overrides: str) -> dict[str, str]:
    """This machine's environment without service settings, plus the image's ENV; the venv's
    bin first on PATH, where the image has the package's console script and `python`."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES | {"PATH"}}
    env.update(dockerfile_env())
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def image(simulator: RunningSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    data_dir = tmp_path_factory.mktemp("data")
    env = image_environment(
        # 127.0.0.1 instead of the image's 0.0.0.0: a test listens on loopback only.
        HOST="127.0.0.1",
        PORT=str(free_port()),
        DATA_DIR=str(data_dir),
        SIMPRO_BASE_URL=simulator.url,
        SIMPRO_API_KEY="demo-key",
        SIMPRO_RATE_LIMIT="1000",
    )
    assert "REDIS_URL" not in env  # the image's default: the embedded Redis
    log_path = data_dir.parent / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            exec_form("CMD"), env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield Image(f"http://127.0.0.1:{env['PORT']}", env, data_dir)
        finally:
            stop_process(process)
    # SIGTERM (what `docker stop` sends PID 1) drains and stops the Redis cleanly; uvicorn
    # then re-raises the signal, so the status is 0 or "killed by SIGTERM".
    log_text = log_path.read_text()
    assert process.returncode in {0, -signal.SIGTERM}, log_text[-3000:]
    assert "Embedded Redis stopped" in log_text


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        exec_form("HEALTHCHECK"), env=env, capture_output=True, text=True, timeout=15
    )


def healthy_within(env: dict[str, str], seconds: int) -> bool:
    """The healthcheck run as Docker would, once a second (a bounded start period)."""
    for _ in range(seconds):
        if healthcheck(env).returncode == 0:
            return True
        time.sleep(1)
    return False


def test_the_healthcheck_passes_against_the_service_the_cmd_starts(image: Image) -> None:
    assert healthy_within(image.env, 30)


def test_the_cmd_counts_with_the_embedded_redis_in_data_dir(
    image: Image, simulator: RunningSimulator
) -> None:
    assert healthy_within(image.env, 30)
    assert wait_until_counted(image.url, within=30) == simulator.simulator.truth().customers
    assert (image.data_dir / "redis.sock").exists()
    assert any(path.name.startswith("appendonly") for path in image.data_dir.iterdir())


def test_the_healthcheck_fails_when_nothing_answers() -> None:
    result = healthcheck(image_environment(PORT=str(free_port())))
    assert result.returncode != 0
    assert "Connection refused" in result.stderr


# --- the image installs the lock, and nothing else ---------------------------------------


def stage_runs(stage: list[tuple[str, str]]) -> str:
    return " ".join(args for name, args in stage if name == "RUN")


def test_the_image_installs_exactly_the_locked_wheels_checked_by_hash() -> None:
    instructions = dockerfile_instructions()
    build, final = instructions[: len(instructions) - len(final_stage())], final_stage()
    assert ("COPY", "requirements.lock ./") in build
    build_runs = stage_runs(build)
    # Wheels only (a wheel built here would not match the lock's hashes), each checked.
    assert "pip download --require-hashes --only-binary=:all: " in build_runs
    assert "-r requirements.lock" in build_runs
    assert "pip wheel --no-deps " in build_runs  # the project's own wheel, nothing else
    final_runs = stage_runs(final)
    assert (
        "pip install --no-index --find-links=/wheels --require-hashes "
        "-r /wheels/requirements.lock" in final_runs
    )
    assert "pip install --no-index --find-links=/wheels --no-deps simpro-counter" in final_runs
    assert "--upgrade" not in final_runs


def test_the_build_context_holds_the_lock_and_no_secrets() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # everything out, then only what the image needs back in
    assert set(rules) >= {"!requirements.lock", "!pyproject.toml", "!README.md", "!src/"}
    assert not any(rule.startswith("!") and "env" in rule for rule in rules)


def test_the_images_data_dir_is_created_private_to_its_user() -> None:
    (run,) = [args for name, args in final_stage() if name == "RUN"]
    assert re.search(r"install -d -o simpro -g simpro -m 0700 /data\b", run)
