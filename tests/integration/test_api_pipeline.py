"""An API connector end to end through Dagster: REST fake -> raw asset -> DuckDB, incrementally."""

from __future__ import annotations

import dagster as dg
import duckdb

from tests.support.fake_http import FakeServer, Request, Response, serve
from tests.support.project_files import run, write_project

USERS = [
    {"id": 1, "name": "Ada", "updated_at": "2026-01-01T00:00:00Z"},
    {"id": 2, "name": "Grace", "updated_at": "2026-01-02T00:00:00Z"},
    {"id": 3, "name": "Linus", "updated_at": "2026-01-02T00:00:00Z"},
]


def users_api(users: list[dict]) -> FakeServer:
    """Pages of two users, cursor-paged, filtered by `updated_since` (inclusive)."""
    fake = FakeServer()

    @fake.route("GET", "/users")
    def list_users(request: Request) -> Response:
        assert request.headers["authorization"] == "Bearer api-secret-123"
        since = request.param("updated_since")
        matching = [u for u in users if since is None or u["updated_at"] >= since]
        start = int(request.param("cursor") or 0)
        page = matching[start : start + 2]
        more = start + 2 < len(matching)
        return Response(200, {"data": page, "next": str(start + 2) if more else None})

    return fake


def test_rest_api_pipeline_materializes_and_syncs_incrementally(tmp_path, monkeypatch):
    users = list(USERS)
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.setenv("USERS_API_KEY", "api-secret-123")
    with serve(users_api(users)) as fake:
        source = {
            "connector": "rest_api",
            "config": {
                "base_url": fake.url,
                "auth_type": "bearer",
                "api_key": "${USERS_API_KEY}",
                "endpoints": {
                    "users": {
                        "path": "/users",
                        "data_path": "data",
                        "pagination": {"type": "cursor", "cursor_path": "next",
                                       "cursor_param": "cursor"},
                        "incremental": {"cursor_param": "updated_since",
                                        "cursor_field": "updated_at"},
                        "schema": {"id": "BIGINT", "name": "VARCHAR",
                                   "updated_at": "TIMESTAMPTZ"},
                    }
                },
            },
            "tables": ["users"],
            "sync_mode": "incremental",
            "incremental_key": "updated_at",
            "primary_key": ["id"],
        }  # fmt: skip
        directory = write_project(
            tmp_path / "pipelines",
            {"warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
            {"users.yaml": {"name": "users", "source": source,
                            "destination": {"connection": "warehouse", "load_mode": "upsert",
                                            "upsert_key": ["id"]}}},
        )  # fmt: skip
        with dg.instance_for_test() as instance:
            assert run(directory, "users", instance).success
            users.append({"id": 4, "name": "Barbara", "updated_at": "2026-01-03T00:00:00Z"})
            users[0] = {"id": 1, "name": "Ada L.", "updated_at": "2026-01-03T00:00:00Z"}
            assert run(directory, "users", instance).success
            raw = instance.get_latest_materialization_event(
                dg.AssetKey(["default", "users", "raw", "users"])
            ).asset_materialization
        # The second run asked only for users changed since the committed cursor.
        assert fake.requests[-1].param("updated_since") == "2026-01-02T00:00:00+00:00"
    assert raw.metadata["dagster/row_count"].value == 2
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT id, name FROM users ORDER BY id").fetchall() == [
            (1, "Ada L."),
            (2, "Grace"),
            (3, "Linus"),
            (4, "Barbara"),
        ]
