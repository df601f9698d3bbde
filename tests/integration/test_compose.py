"""The compose file is valid against the Compose specification and matches the stages."""

from __future__ import annotations

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


def test_docker_compose_config_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: ./dev test installs Debian's docker-compose package"
    result = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
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
        assert binance["environment"]["TICKPIPE_VENUE"] == "binance"
        assert "profiles" not in binance
        assert alpaca["profiles"] == ["alpaca"]
        assert alpaca["environment"]["TICKPIPE_VENUE"] == "alpaca"
        assert alpaca["environment"]["TICKPIPE_VENUES"] == "alpaca"
        assert alpaca["healthcheck"]["test"][-1] == "--check"
    assert "--alpaca-port" in services["mock"]["command"]
    assert services["dashboard"]["environment"]["TICKPIPE_VENUES"].startswith("${TICKPIPE_VENUES")


def test_dockerfile_installs_the_way_the_readme_does() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "./dev install" in text
    for package in ("common", "mock_ws", "ingestor", "processor", "trader"):
        assert f"COPY {package} " in text


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
    result = subprocess.run(
        [binary, "--env-file", str(tmp_path / "compose.env"),
         "-f", str(REPO / "docker-compose.yml"), "-f", str(REPO / "deploy" / "compose.acl.yml"),
         "config"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
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
