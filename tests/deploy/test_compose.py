"""deploy/compose.yaml and deploy/Dockerfile, checked without a container engine: the file
parses; every examvault service's command parses with the image's entry point (`examvault`'s
own argparse); every EXAMVAULT_* variable is a setting examvault knows; secrets are files;
the pieces that must agree (nginx's internal location and the objects path, health checks,
the image's user and stages) do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.settings import SECRET_FIELDS, Settings
from tests.deploy.units import DEPLOY, known_variables, parse_command

COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE = "examvault:latest"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _examvault_services() -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in _services().items() if spec.get("image") == IMAGE}


def _dockerfile_stages() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    return re.split(r"(?m)^FROM ", text)[1:]


def test_compose_file_has_the_deployment_shape() -> None:
    services = _services()
    assert {"postgres", "ceph", "migrate", "storage-init", "api-1", "api-2", "worker", "nginx"} <= (
        set(services)
    )
    assert set(_examvault_services()) == {"migrate", "storage-init", "api-1", "api-2", "worker"}
    assert services["worker"]["deploy"]["replicas"] == "${EXAMVAULT_WORKERS:-2}"
    for one_shot in ("migrate", "storage-init"):
        assert services[one_shot]["restart"] == "no"
    for name in ("api-1", "api-2", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "storage-init": {"condition": "service_completed_successfully"},
        }
    assert set(_compose()["volumes"]) == {"postgres-data", "ceph-data", "examvault-data"}


@pytest.mark.parametrize("name", sorted(_examvault_services()))
def test_examvault_service_commands_parse_with_the_entry_point(name: str) -> None:
    command = _examvault_services()[name]["command"]
    assert isinstance(command, list), "exec form: no shell between the container and examvault"
    parsed = parse_command(command)
    assert callable(parsed.handler)


def test_the_image_entry_point_and_default_command() -> None:
    final = _dockerfile_stages()[-1]
    assert 'ENTRYPOINT ["examvault"]' in final
    (default,) = re.findall(r"(?m)^CMD (\[.*\])$", final)
    parse_command(yaml.safe_load(default))


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_examvault_variable_is_a_known_setting(name: str) -> None:
    spec = _services()[name]
    environment = spec.get("environment") or {}
    assert isinstance(environment, dict)
    if spec.get("image") == IMAGE:
        unknown = set(environment) - known_variables()
    else:
        unknown = {key for key in environment if key.startswith("EXAMVAULT_")} - known_variables()
    assert unknown == set()


def test_secrets_are_files_never_values() -> None:
    for name, spec in _examvault_services().items():
        environment = spec["environment"]
        for field in SECRET_FIELDS:
            variable = f"EXAMVAULT_{field.upper()}"
            assert variable not in environment, f"{name} sets {variable} outright"
            path = environment[f"{variable}_FILE"]
            secret = path.removeprefix("/run/secrets/")
            assert secret in spec["secrets"], f"{name} reads {path} but does not mount it"
    for secret in _compose()["secrets"].values():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/")
    assert _services()["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]


def test_api_health_checks_readiness_and_nginx_liveness() -> None:
    services = _services()
    for name in ("api-1", "api-2"):
        check = " ".join(services[name]["healthcheck"]["test"])
        assert "http://127.0.0.1:8000/readyz" in check
        assert services["nginx"]["depends_on"][name] == {"condition": "service_healthy"}
    assert "https://127.0.0.1/healthz" in " ".join(services["nginx"]["healthcheck"]["test"])
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


def test_nginx_serves_the_objects_the_api_names() -> None:
    """The X-Accel location in nginx is the settings' default, over the objects directory of
    the volume the API writes: a mismatch would make every footage read 404."""
    conf = (DEPLOY / "nginx" / "examvault.conf").read_text(encoding="utf-8")
    location = Settings.model_fields["footage_accel_location"].default
    assert f"location {location} {{\n        internal;" in conf
    (alias,) = re.findall(r"alias (\S+);", conf)
    mounts = _services()["nginx"]["volumes"]
    assert "examvault-data:/var/lib/examvault:ro" in mounts
    assert alias == "/var/lib/examvault/objects/"
    for mount in mounts:
        source = mount.split(":", 1)[0]
        if source.startswith("./"):
            assert (DEPLOY / source).is_file(), f"{source} is missing"
    environment = _examvault_services()["api-1"]["environment"]
    assert environment["EXAMVAULT_FOOTAGE_OFFLOAD"] == "true"


def test_nginx_limits_match_the_operations_page() -> None:
    conf = (DEPLOY / "nginx" / "examvault.conf").read_text(encoding="utf-8")
    settings = Settings()
    assert f"client_header_timeout {settings.http_header_timeout_seconds:g}s;" in conf
    assert f"client_body_timeout {settings.http_body_timeout_seconds:g}s;" in conf
    assert f"keepalive_timeout {settings.http_keep_alive_seconds:g}s;" in conf
    assert f"client_max_body_size {settings.max_upload_bytes // 1024**3}g;" in conf
    assert "proxy_request_buffering off;" in conf


def test_dockerfile_is_multi_stage_slim_and_runs_unprivileged() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert "slim" in DOCKERFILE.read_text(encoding="utf-8")
    assert "COPY --from=build /opt/examvault /opt/examvault" in final
    for tool in ("build-essential", "gcc", "pip install"):
        assert tool not in final, f"the run stage has {tool}"
    (user,) = re.findall(r"(?m)^USER (\S+)$", final)
    assert not user.startswith(("root", "0"))


def test_the_ceph_demo_script_is_mounted_and_executable() -> None:
    script = DEPLOY / "ceph" / "demo.sh"
    assert script.stat().st_mode & 0o111
    assert (
        f"./ceph/demo.sh:{_services()['ceph']['entrypoint'][0]}:ro"
        in (_services()["ceph"]["volumes"])
    )


def test_compose_paths_exist() -> None:
    assert (DEPLOY / "Dockerfile").is_file()
    build = _examvault_services()["api-1"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    assert Path(DEPLOY / "nginx" / "objects.conf").is_file()
