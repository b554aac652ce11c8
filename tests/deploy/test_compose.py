"""docker-compose.yml: the production stack's structure (no Docker engine here, so parsed, not run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from pattern_service.config import Settings

REPO = Path(__file__).resolve().parents[2]
BACKENDS = {"postgres": "postgres:15", "redis": "redis:7", "qdrant": "qdrant/qdrant:"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def service(compose: dict[str, Any]) -> dict[str, Any]:
    svc = compose["services"]["pattern-service"]
    assert isinstance(svc, dict)
    return svc


def test_backends_have_pinned_images_healthchecks_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*BACKENDS, "pattern-service"}
    for name, image in BACKENDS.items():
        assert services[name]["image"].startswith(image), name
        assert services[name]["image"].split(":")[1] != "latest", name
        assert services[name]["healthcheck"]["test"], name
        for volume in services[name]["volumes"]:
            assert volume.split(":")[0] in compose["volumes"], volume


def test_service_is_built_from_the_repo_and_waits_for_healthy_backends(service: dict[str, Any]) -> None:
    assert service["build"] == "."
    assert (REPO / "Dockerfile").is_file()
    assert service["depends_on"] == {name: {"condition": "service_healthy"} for name in BACKENDS}
    assert "50051:50051" in service["ports"]
    assert service["healthcheck"]["test"][0] == "CMD"
    assert any(v.endswith(":/data") for v in service["volumes"])


def test_service_environment_names_real_settings_and_points_at_the_backends(service: dict[str, Any]) -> None:
    env: dict[str, str] = service["environment"]
    known = {f"TMWS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    assert env["TMWS_DATA_DIR"] == "/data"
    assert env["TMWS_GRPC_ADDRESS"] == "0.0.0.0:50051"
    db = make_url(env["TMWS_DATABASE_URL"].replace("${POSTGRES_PASSWORD:-tmws}", "tmws"))
    assert (db.drivername, db.host, db.port, db.database) == ("postgresql+asyncpg", "postgres", 5432, "tmws")
    assert env["TMWS_REDIS_URL"].startswith("redis://redis:6379")
    assert env["TMWS_QDRANT_URL"] == "http://qdrant:6333"
    # A non-loopback server needs API keys (or an explicit opt-out): compose requires them to be given.
    assert env["TMWS_API_KEYS"].startswith("${TMWS_API_KEYS:?")


def test_dockerfile_migrates_before_serving_with_the_migration_scripts_in_the_image() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY alembic /app/alembic" in dockerfile
    assert "alembic.ini" in dockerfile.split("COPY pyproject.toml", 1)[1].splitlines()[0]
    assert "python -m pattern_service migrate && exec python -m pattern_service serve" in dockerfile
    # db.py finds alembic.ini two levels above the package (/app/pattern_service -> /app).
    assert "COPY pattern_service /app/pattern_service" in dockerfile
