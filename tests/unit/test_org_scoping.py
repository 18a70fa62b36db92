"""Orgs in a project: pipelines of listed orgs only, connections scoped to an org, and
pipeline names unique per org."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from datapipe_assets.pipeline.keys import dagster_name, qualified_name
from datapipe_assets.pipeline.project import Project, load_project
from tests.support.project_files import write_project

CSV = {"connector": "csv", "config": {"path": "orders.csv"}}
DUCKDB = {"connector": "duckdb", "config": {"path": "w.duckdb"}}


def _pipeline(name: str, org: str | None, source: str = "src", **spec: Any) -> dict[str, Any]:
    return {
        "name": name,
        **({"org": org} if org is not None else {}),
        "source": {"connection": source, "tables": ["orders"]},
        "destination": {"connection": "warehouse"},
        **spec,
    }


def _org_connections(directory: Path, org: str, connections: dict[str, Any]) -> None:
    folder = directory / "orgs" / org
    folder.mkdir(parents=True)
    (folder / "connections.yaml").write_text(yaml.safe_dump(connections))


def _errors(project: Project) -> list[str]:
    return [str(error) for errors in project.errors.values() for error in errors]


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """Orgs acme and beta, each with its own `src` and `warehouse`; a shared `common`."""
    (tmp_path / "orgs.yaml").write_text("orgs:\n  acme: {plan: pro}\n  beta: {plan: free}\n")
    write_project(tmp_path, {"common": CSV}, {})
    for org in ("acme", "beta"):
        _org_connections(
            tmp_path,
            org,
            {"src": CSV, "warehouse": DUCKDB},
        )
    return tmp_path


def test_a_pipeline_of_an_org_orgs_yaml_does_not_list_is_refused(directory: Path) -> None:
    (directory / "p.yaml").write_text(yaml.safe_dump(_pipeline("p", "gamma")))
    (directory / "q.yaml").write_text(yaml.safe_dump(_pipeline("q", None)))
    assert _errors(load_project(directory)) == [
        f"{directory / 'p.yaml'}: org: pipeline 'p' names org 'gamma', which "
        f"{directory / 'orgs.yaml'} does not list (orgs: acme, beta); add 'gamma' to "
        f"{directory / 'orgs.yaml'}, or use one of its orgs",
        # A pipeline that names no org is in the org `default`, which must be listed too.
        f"{directory / 'q.yaml'}: org: pipeline 'q' names org 'default', which "
        f"{directory / 'orgs.yaml'} does not list (orgs: acme, beta); add 'default' to "
        f"{directory / 'orgs.yaml'}, or use one of its orgs",
    ]


def test_connections_of_unlisted_orgs_are_refused(directory: Path) -> None:
    write_project(
        directory,
        {"common": CSV, "lost": {**CSV, "org": "gamma"}, "src": {**CSV, "org": "acme"}},
        {"p.yaml": _pipeline("p", "acme")},
    )
    _org_connections(directory, "delta", {"src": CSV})
    (directory / "orgs" / "acme" / "connections.yaml").write_text(
        yaml.safe_dump({"src": CSV, "warehouse": DUCKDB, "wrong": {**CSV, "org": "beta"}})
    )
    connections = directory / "connections.yaml"
    delta, acme = directory / "orgs" / "delta", directory / "orgs" / "acme"
    project = load_project(directory)
    assert _errors(project) == [
        f"{connections}: lost.org: connection 'lost' names org 'gamma', which "
        f"{directory / 'orgs.yaml'} does not list (orgs: acme, beta); add 'gamma' to "
        f"{directory / 'orgs.yaml'}, or use one of its orgs",
        f"{acme / 'connections.yaml'}: src: connection 'src' of org 'acme' is also declared in "
        "connections.yaml; keep one of them",
        f"{acme / 'connections.yaml'}: wrong.org: connection 'wrong' is in org 'acme''s folder "
        "but says org 'beta'; remove its org: key, or move it to orgs/beta/connections.yaml",
        f"{delta / 'connections.yaml'}: folder orgs/delta names org 'delta', which "
        f"{directory / 'orgs.yaml'} does not list (orgs: acme, beta); add 'delta' to "
        f"{directory / 'orgs.yaml'}, or use one of its orgs",
    ]
    # The folder's other connections still load: acme's pipeline reads the declared `src`.
    assert project.get("p").destination.label == "acme/warehouse"


def test_a_pipeline_may_not_use_another_orgs_connection(directory: Path) -> None:
    write_project(
        directory,
        {"common": CSV, "acme_only": {**CSV, "org": "acme"}},
        {"steal.yaml": _pipeline("steal", "beta", source="acme_only")},
    )
    assert _errors(load_project(directory)) == [
        f"{directory / 'steal.yaml'}: source.connection: pipeline 'steal' (org 'beta'): "
        "connection 'acme_only' belongs to org 'acme'; use a connection of org 'beta' or a "
        "shared one",
    ]


def test_each_org_uses_its_own_connection_of_a_shared_name(directory: Path) -> None:
    write_project(
        directory,
        {"common": CSV, "src": {"connector": "csv", "config": {"path": "shared.csv"}}},
        {
            "acme_orders.yaml": _pipeline("orders", "acme"),
            "beta_orders.yaml": _pipeline("orders", "beta"),
            "beta_common.yaml": _pipeline("from_common", "beta", source="common"),
        },
    )
    project = load_project(directory)
    assert project.errors == {}
    acme, beta = project.get("acme/orders"), project.get("beta/orders")
    # The org's own `src` wins over the shared one; relative paths resolve in its folder.
    source, destination = acme.sources[0], beta.destination
    assert (source.label, source.base_dir) == ("acme/src", directory / "orgs" / "acme")
    assert (destination.label, destination.base_dir) == ("beta/warehouse", directory / "orgs/beta")
    # Every org reads its secrets from the one store beside connections.yaml.
    assert acme.sources[0].secrets_file == directory / "secrets.enc.yaml"
    assert project.get("from_common").sources[0].label == "common"
    assert [dagster_name(p.pipeline) for p in (acme, beta)] == ["acme__orders", "beta__orders"]
    assert project.label(acme.pipeline) == "acme/orders"
    assert project.label(project.get("from_common").pipeline) == "from_common"
    with pytest.raises(KeyError) as ambiguous:
        project.get("orders")
    assert ambiguous.value.args[0] == (
        "pipeline name 'orders' is used by several orgs; name one of: acme/orders, beta/orders"
    )
    with pytest.raises(KeyError) as unknown:
        project.get("gamma/orders")
    assert unknown.value.args[0] == (
        "no valid pipeline named 'gamma/orders'; valid pipelines: acme/orders, from_common, "
        "beta/orders"
    )


def test_names_are_unique_per_org_and_dagster_names_never_clash(directory: Path) -> None:
    (directory / "orgs.yaml").write_text("orgs:\n  acme: {}\n  beta: {}\n  default: {}\n")
    write_project(
        directory,
        {"common": CSV, "warehouse": DUCKDB},
        {
            "a.yaml": _pipeline("orders", "acme"),
            "b.yaml": _pipeline("orders", "acme", source="common"),
            "c.yaml": _pipeline("acme__orders", None, source="common"),
        },
    )
    assert _errors(load_project(directory)) == [
        f"{directory / 'b.yaml'}: name: pipeline name 'orders' is already used in org 'acme' "
        f"by {directory / 'a.yaml'}; give each pipeline a unique name",
        f"{directory / 'c.yaml'}: name: pipeline 'default/acme__orders' and 'acme/orders' "
        f"({directory / 'a.yaml'}) would share the Dagster name 'acme__orders'; rename one of "
        "them",
    ]
    assert qualified_name("default", "orders") == "orders"


def test_a_trigger_names_a_pipeline_of_its_own_org(directory: Path) -> None:
    write_project(
        directory,
        {"common": CSV},
        {
            "acme_orders.yaml": _pipeline("orders", "acme"),
            "acme_report.yaml": _pipeline("report", "acme", trigger={"after": ["orders"]}),
            "beta_report.yaml": _pipeline("report", "beta", trigger={"after": ["orders"]}),
        },
    )
    project = load_project(directory)
    assert _errors(project) == [
        f"{directory / 'beta_report.yaml'}: trigger.after: names 'orders', which is not "
        "another valid pipeline; use one of: none",
    ]
    assert [project.label(p.pipeline) for p in project.pipelines] == ["orders", "acme/report"]
