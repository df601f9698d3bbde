"""The compose file is valid against the Compose specification and matches the stages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
# Shipped by Debian's docker-compose package (./dev test installs it).
SPEC = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: ./dev test installs Debian's docker-compose package"
    # as the docs say: the compose file beside a .env copied from .env.example
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        [binary, "config", "-q"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_file_validates_against_the_compose_spec_schema() -> None:
    import json

    assert SPEC.exists(), f"{SPEC} is missing: install Debian's docker-compose package"
    schema = json.loads(SPEC.read_text())
    # The spec names its meta-schema by a URL jsonschema does not resolve offline; name it here.
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []
    # ... and the same validator does reject a wrong file.
    broken = {"services": {"x": {"image": "a", "restart_policy_typo": "always"}}}
    assert list(validator.iter_errors(broken))


def test_every_stage_runs_with_a_health_check_and_redis_keeps_an_aof() -> None:
    services = _compose()["services"]
    assert {"redis", "mock", "ingestor", "processor", "trader"} <= set(services)
    for stage in ("ingestor", "processor", "trader"):
        assert services[stage]["healthcheck"]["test"][-1] == "--check"
    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd and "noeviction" in redis_cmd
    assert services["processor"]["deploy"]["replicas"] >= 2


def test_the_alpaca_profile_runs_a_set_of_stages_pinned_to_alpaca() -> None:
    services = _compose()["services"]
    for stage in ("ingestor", "processor", "trader"):
        binance, alpaca = services[stage], services[f"{stage}-alpaca"]
        # the first set is .env's venue, Binance by default; the Alpaca set pins its own
        assert binance["environment"]["TICKPIPE_VENUE"] == "${TICKPIPE_VENUE:-binance}"
        assert "profiles" not in binance
        assert alpaca["profiles"] == ["alpaca"]
        assert alpaca["environment"]["TICKPIPE_VENUE"] == "alpaca"
        assert alpaca["environment"]["TICKPIPE_VENUES"] == "alpaca"
        assert alpaca["healthcheck"]["test"][-1] == "--check"
    assert "--alpaca-port" in services["mock"]["command"]
    assert services["dashboard"]["environment"]["TICKPIPE_VENUES"].startswith("${TICKPIPE_VENUES")


def _stages(dockerfile: str) -> list[str]:
    """Split a Dockerfile into its build stages (text from one FROM to the next)."""
    parts = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)
    return ["FROM " + part for part in parts[1:]]


def test_dockerfile_builds_a_slim_runtime_without_dev_tools() -> None:
    build, runtime = _stages((REPO / "Dockerfile").read_text())
    for package in ("common", "mock_ws", "ingestor", "processor", "trader", "venues", "tickpipe"):
        assert f"COPY {package} " in build
    (extras,) = re.findall(r'pip install [^\n]*"\.\[([a-z,]+)\]"', build)
    assert "dev" not in extras.split(",") and "all" not in extras.split(",")
    # the runtime stage takes the installed virtualenv only: no sources, no compilers, no tests
    assert re.findall(r"^COPY .*", runtime, flags=re.MULTILINE) == [
        "COPY --from=build /opt/tickpipe /opt/tickpipe"
    ]
    assert "apt-get install" not in runtime and "pip install" not in runtime


def test_the_non_root_user_owns_the_data_dir_every_stage_writes_to() -> None:
    runtime = _stages((REPO / "Dockerfile").read_text())[-1]
    (user,) = re.findall(r"^USER (\S+)", runtime, flags=re.MULTILINE)
    assert user != "root"
    (data_dir,) = re.findall(r"TICKPIPE_DATA_DIR=(\S+)", runtime)
    assert re.search(rf"chown {user}(:{user})? {re.escape(data_dir)}\b", runtime)
    services = _compose()["services"]
    for name in ("ingestor", "mock"):  # the spill journal and the ground truth outlive containers
        mounts = [str(v).split(":") for v in services[name]["volumes"]]
        assert [m[1] for m in mounts if m[0] in _compose()["volumes"]] == [data_dir]


def test_dockerignore_keeps_state_and_secrets_out_of_the_build_context() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".venv", ".tickpipe", ".env", ".git"} <= patterns


def test_every_setting_of_the_env_file_reaches_every_stage(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: ./dev test installs Debian's docker-compose package"
    example = (REPO / ".env.example").read_text()
    keys = sorted(set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE)))
    assert "TICKPIPE_STRATEGIES" in keys and "TICKPIPE_VENUE" in keys
    # a deployment directory: the compose file and its .env (compose reads both from there)
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("".join(f"{key}=set-{n}\n" for n, key in enumerate(keys)))
    clean = {k: v for k, v in os.environ.items() if k not in keys}  # only .env speaks
    result = subprocess.run(
        [binary, "config"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
        check=False, env=clean,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("mock", "ingestor", "processor", "trader", "dashboard"):
        environment = services[name]["environment"]
        assert {k: environment.get(k) for k in keys} == {
            k: f"set-{n}" for n, k in enumerate(keys)
        }, name


def test_dashboard_service_serves_on_8050_from_the_same_image() -> None:
    services = _compose()["services"]
    dashboard = services["dashboard"]
    assert dashboard["command"][:3] == ["python", "-m", "tickpipe.dashboard"]
    assert any(str(p).endswith("8050:8050") for p in dashboard["ports"])
    assert dashboard["image"] == services["processor"]["image"] == "tickpipe:latest"
    assert dashboard["healthcheck"]["test"][-1] == "--check"
    text = (REPO / "Dockerfile").read_text()
    assert "COPY dashboard " in text and "COPY deploy " in text


def test_stages_get_time_to_finish_their_batch_and_redis_is_durable() -> None:
    services = _compose()["services"]
    for stage in ("ingestor", "processor", "trader", "dashboard"):
        assert services[stage]["stop_grace_period"] == "30s"
        assert services[stage]["stop_signal"] == "SIGTERM"
    command = services["redis"]["command"]
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_acl_override_gives_each_stage_its_own_redis_user(tmp_path: Path) -> None:
    import os

    from tickpipe.deploy.acl import main as acl_main

    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: ./dev test installs Debian's docker-compose package"
    assert acl_main(["--out", str(tmp_path / "users.acl"), "--env-dir", str(tmp_path)]) == 0
    deployment = tmp_path / "deployment"  # the compose files beside their .env
    (deployment / "deploy").mkdir(parents=True)
    shutil.copy(REPO / "docker-compose.yml", deployment)
    shutil.copy(REPO / "deploy" / "compose.acl.yml", deployment / "deploy")
    shutil.copy(REPO / ".env.example", deployment / ".env")
    result = subprocess.run(
        [binary, "--env-file", str(tmp_path / "compose.env"),
         "-f", "docker-compose.yml", "-f", "deploy/compose.acl.yml", "config"],
        capture_output=True, text=True, cwd=deployment, timeout=60, check=False,
        env={**os.environ, "TICKPIPE_ACL_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)["services"]
    assert "--aclfile" in merged["redis"]["command"]
    for stage in ("ingestor", "processor", "trader", "dashboard"):
        assert merged[stage]["environment"]["REDIS_URL"].startswith(f"redis://{stage}:")
    for stage in ("ingestor", "processor", "trader"):  # the Alpaca profile's, as the same users
        url = merged[f"{stage}-alpaca"]["environment"]["REDIS_URL"]
        assert url.startswith(f"redis://{stage}:")
    # Without the generated URLs the override refuses to start, naming what to run.
    bare = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "-f",
         str(REPO / "deploy" / "compose.acl.yml"), "config", "-q"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert bare.returncode != 0 and "tickpipe.deploy.acl" in bare.stderr
