"""load_project over a folder of pipeline files: every error class, with its exact message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from datapipe_assets.project import load_project
from datapipe_assets.validation import find_cycle

CONNECTIONS = """\
orders_csv:
  connector: csv
  config: {path: data/orders.csv}
warehouse:
  connector: duckdb
  config: {path: warehouse.duckdb}
ftp_conn:
  connector: ftp
  config: {}
"""
ORDERS_CSV = "id,status,amount\n1,paid,10\n2,open,20\n3,paid,5\n"

VALID = """\
name: {name}
source: {{connection: orders_csv, tables: [orders]}}
transform:
  nodes:
    - {{id: s, type: source, data: {{table: orders}}}}
    - {{id: paid, type: filter, data: {{column: status, operator: eq, value: paid}}}}
    - {{id: o, type: destination}}
  edges:
    - {{source: s, target: paid}}
    - {{source: paid, target: o}}
destination: {{connection: warehouse, load_mode: upsert, upsert_key: id}}
schedule: daily
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATAPIPE_CONNECTIONS_FILE", raising=False)
    # Errors name files relative to the working directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "connections.yaml").write_text(CONNECTIONS)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text(ORDERS_CSV)
    return tmp_path


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text))


def errors(folder: Path) -> dict[str, list[str]]:
    project = load_project(folder)
    return {file: [str(e) for e in errs] for file, errs in project.errors.items()}


def only_errors(folder: Path, file: str, text: str) -> list[str]:
    """Write one pipeline file; return its errors, checking no other file has any."""
    write(folder, file, text)
    found = errors(folder)
    assert set(found) == {file}
    return found[file]


def pipeline_with(nodes: str, edges: str, extra: str = "") -> str:
    return (
        "name: p\n"
        "source: {connection: orders_csv, tables: [orders]}\n"
        "transform:\n"
        "  nodes:\n"
        + textwrap.indent(textwrap.dedent(nodes), "    ")
        + "  edges:\n"
        + textwrap.indent(textwrap.dedent(edges), "    ")
        + "destination: {connection: warehouse}\n"
        + extra
    )


def test_valid_pipeline_loads(folder):
    write(folder, "good.yaml", VALID.format(name="good"))
    project = load_project(folder)
    assert project.errors == {}
    assert [p.pipeline.name for p in project.pipelines] == ["good"]
    loaded = project.pipelines[0]
    assert loaded.file == folder / "good.yaml"
    assert (loaded.source.name, loaded.source.connector) == ("orders_csv", "csv")
    assert (loaded.destination.name, loaded.destination.connector) == ("warehouse", "duckdb")


def test_malformed_yaml_names_line_and_column(folder):
    text = """\
    name: x
    source:
      connection: orders_csv
       tables: [orders]
    """
    assert only_errors(folder, "bad.yaml", text) == [
        "bad.yaml: line 4, column 10: malformed YAML: mapping values are not allowed here; "
        "fix the indentation or quoting there"
    ]


def test_malformed_json_names_line_and_column(folder):
    text = '{"name": "j",\n "sourceConfig": {"connection": "orders_csv",, "tables": []}}\n'
    assert only_errors(folder, "bad.json", text) == [
        "bad.json: line 2, column 46: malformed JSON: Expecting property name enclosed in "
        "double quotes; fix the JSON syntax there"
    ]


def test_file_that_is_not_a_mapping(folder):
    assert only_errors(folder, "list.yaml", "- a\n- b\n") == [
        "list.yaml: is not a pipeline; a pipeline file is a mapping with name, source and "
        "destination"
    ]


def test_unknown_key(folder):
    text = """\
    name: b
    colour: red
    source: {connection: orders_csv, tables: [orders]}
    destination: {connection: warehouse, load_mod: append}
    """
    assert only_errors(folder, "b.yaml", text) == [
        "b.yaml: destination.load_mod: unknown key; remove it or check its spelling",
        "b.yaml: colour: unknown key; remove it or check its spelling",
    ]


def test_bad_name_pattern(folder):
    text = """\
    name: Bad-Name
    source: {connection: orders_csv, tables: [orders]}
    destination: {connection: warehouse}
    """
    assert only_errors(folder, "c.yaml", text) == [
        "c.yaml: name: String should match pattern '^[a-z][a-z0-9_]{0,62}$'; use lowercase "
        "letters, digits and _, starting with a letter"
    ]


def test_unknown_connector_inline_and_in_connections(folder):
    text = """\
    name: d
    source: {connector: ftp, config: {}, tables: [orders]}
    destination: {connection: ftp_conn}
    """
    assert only_errors(folder, "d.yaml", text) == [
        "d.yaml: source.connector: connector 'ftp' cannot be used as a source; use one of: "
        "csv, postgres",
        "d.yaml: destination.connection: connector 'ftp' cannot be used as a destination; "
        "use one of: duckdb, postgres",
    ]


def test_source_connector_used_as_destination(folder):
    text = """\
    name: d
    source: {connection: orders_csv, tables: [orders]}
    destination: {connector: csv, config: {path: out.csv}}
    """
    assert only_errors(folder, "d.yaml", text) == [
        "d.yaml: destination.connector: connector 'csv' cannot be used as a destination; "
        "use one of: duckdb, postgres",
    ]


def test_unknown_connection(folder):
    text = """\
    name: e
    source: {connection: nope, tables: [orders]}
    destination: {connection: warehouse}
    """
    assert only_errors(folder, "e.yaml", text) == [
        "e.yaml: source.connection: unknown connection 'nope'; add it to connections.yaml or "
        "use one of: ftp_conn, orders_csv, warehouse"
    ]


def test_unknown_connection_without_connections_file(folder):
    (folder / "connections.yaml").unlink()
    text = """\
    name: e
    source: {connector: csv, config: {path: data/orders.csv}, tables: [orders]}
    destination: {connection: warehouse}
    """
    assert only_errors(folder, "e.yaml", text) == [
        "e.yaml: destination.connection: unknown connection 'warehouse'; add it to "
        "connections.yaml or use one of: none defined"
    ]


def test_unknown_node_type(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: p, type: pivot, data: {}}
        - {id: o, type: destination}
        """,
        "- {source: s, target: p}\n- {source: p, target: o}\n",
    )
    assert only_errors(folder, "f.yaml", text) == [
        "f.yaml: transform.nodes[1]: Input tag 'pivot' found using 'type' does not match any of "
        "the expected tags: 'source', 'destination', 'filter', 'rename', 'computed', "
        "'aggregate', 'deduplicate', 'sql'; use one of the node types listed"
    ]


def test_missing_required_fields_are_all_reported(folder):
    text = """\
    name: g
    source: {connection: orders_csv}
    transform:
      nodes:
        - {id: s, type: source, data: {table: orders}}
        - {id: f, type: filter, data: {operator: eq, value: 1}}
        - {id: c, type: computed, data: {columns: [{name: x, expression: "1"}]}}
    """
    assert only_errors(folder, "g.yaml", text) == [
        "g.yaml: source.tables: Field required; required; add it",
        "g.yaml: transform.nodes[1].data.column: Field required; required; add it",
        "g.yaml: transform.nodes[2].data.columns[0].result_type: Field required; required; add it",
        "g.yaml: destination: Field required; required; add it",
    ]


def test_bad_literal_value(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: f, type: filter, data: {column: status, operator: like, value: x}}
        - {id: o, type: destination}
        """,
        "- {source: s, target: f}\n- {source: f, target: o}\n",
    )
    assert only_errors(folder, "f.yaml", text) == [
        "f.yaml: transform.nodes[1].data.operator: Input should be 'eq', 'neq', 'gt', 'gte', "
        "'lt', 'lte', 'contains', 'not_contains', 'is_null', 'is_not_null' or 'in'; use one of "
        "the values listed"
    ]


def test_edge_missing_its_source_names_the_field(folder):
    text = pipeline_with(
        "- {id: s, type: source, data: {table: orders}}\n- {id: o, type: destination}\n",
        "- {target: o}\n- {source: s}\n",
    )
    assert only_errors(folder, "e.yaml", text) == [
        "e.yaml: transform.edges[0].source: Field required; required; add it",
        "e.yaml: transform.edges[1].target: Field required; required; add it",
    ]


def test_cycle_names_its_path(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: a, type: filter, data: {column: status, operator: eq, value: paid}}
        - {id: b, type: filter, data: {column: status, operator: eq, value: paid}}
        - {id: o, type: destination}
        """,
        """\
        - {source: s, target: o}
        - {source: a, target: b}
        - {source: b, target: a}
        """,
    )
    assert only_errors(folder, "h.yaml", text) == [
        "h.yaml: transform.edges: the graph has a cycle: a -> b -> a; remove one of these edges"
    ]


def test_edge_to_unknown_node_and_wrong_input_counts(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: a, type: filter, data: {column: status, operator: eq, value: paid}}
        - {id: o, type: destination}
        """,
        """\
        - {source: ghost, target: o}
        - {source: s, target: o}
        - {source: s, target: nowhere}
        """,
    )
    assert only_errors(folder, "i.yaml", text) == [
        "i.yaml: transform.edges[0].source: edge points to unknown node 'ghost'; use one of the "
        "node ids: s, a, o",
        "i.yaml: transform.edges[2].target: edge points to unknown node 'nowhere'; use one of "
        "the node ids: s, a, o",
        "i.yaml: transform.nodes[1]: node 'a' has 0 inputs; connect exactly one edge into every "
        "node but source nodes",
        "i.yaml: transform.nodes[2]: node 'o' has 2 inputs (ghost, s); connect exactly one edge "
        "into every node but source nodes",
    ]


def test_node_with_two_inputs(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: a, type: filter, data: {column: status, operator: eq, value: paid}}
        - {id: b, type: filter, data: {column: status, operator: eq, value: open}}
        - {id: o, type: destination}
        """,
        """\
        - {source: s, target: a}
        - {source: s, target: b}
        - {source: a, target: o}
        - {source: b, target: o}
        """,
    )
    assert only_errors(folder, "two.yaml", text) == [
        "two.yaml: transform.nodes[3]: node 'o' has 2 inputs (a, b); connect exactly one edge "
        "into every node but source nodes"
    ]


def test_graph_shape_errors(folder):
    text = """\
    name: p
    source: {connection: orders_csv, tables: [orders, extra]}
    transform:
      nodes:
        - {id: s, type: source, data: {table: other}}
        - {id: s, type: destination}
        - {id: t, type: filter, data: {column: status, operator: is_null}}
      edges:
        - {source: t, target: s}
    destination: {connection: warehouse}
    """
    assert only_errors(folder, "shape.yaml", text) == [
        "shape.yaml: transform.nodes[1].id: duplicate node id 's'; give every node a unique id",
        "shape.yaml: transform.nodes[0].data.table: table 'other' is not in source.tables; use "
        "one of: orders, extra",
        "shape.yaml: transform.nodes[0]: source node 's' has an input; remove the edges into it",
        "shape.yaml: transform.nodes[2]: node 't' has 0 inputs; connect exactly one edge into "
        "every node but source nodes",
        "shape.yaml: source.tables: table 'orders' is extracted but no source node reads it; add "
        "a source node for it or remove it from source.tables",
        "shape.yaml: source.tables: table 'extra' is extracted but no source node reads it; add "
        "a source node for it or remove it from source.tables",
    ]


def test_unknown_column_in_filter_is_caught_at_load(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: a, type: filter, data: {column: stat, operator: eq, value: paid}}
        - {id: o, type: destination}
        """,
        "- {source: s, target: a}\n- {source: a, target: o}\n",
    )
    assert only_errors(folder, "j.yaml", text) == [
        "j.yaml: transform.nodes[1].data: node 'a' (filter): unknown column 'stat'; the input "
        "has id, status, amount; fix the node's settings"
    ]


def test_upsert_key_missing_from_the_loaded_data_is_caught_at_load(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: a, type: aggregate, data: {groupBy: status, measures: [{column: amount, function: sum, alias: t}]}}
        - {id: o, type: destination}
        """,  # noqa: E501
        "- {source: s, target: a}\n- {source: a, target: o}\n",
    ).replace(
        "destination: {connection: warehouse}",
        "destination: {connection: warehouse, load_mode: upsert, upsert_key: [id]}",
    )
    assert only_errors(folder, "u.yaml", text) == [
        "u.yaml: destination.upsert_key: the loaded data has no column 'id'; use one of: status, t"
    ]


def test_unknown_column_after_a_rename_is_caught_at_load(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: r, type: rename, data: {mappings: [{from: status, to: state}]}}
        - {id: a, type: aggregate, data: {group_by: status, measures: [{column: amount, function: sum, alias: t}]}}
        - {id: o, type: destination}
        """,  # noqa: E501
        "- {source: s, target: r}\n- {source: r, target: a}\n- {source: a, target: o}\n",
    )
    assert only_errors(folder, "r.yaml", text) == [
        "r.yaml: transform.nodes[2].data: node 'a' (aggregate): unknown column 'status'; the "
        "input has id, state, amount; fix the node's settings"
    ]


def test_filter_problem_that_needs_no_schema(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: a, type: filter, data: {column: status, operator: in, value: paid}}
        - {id: o, type: destination}
        """,
        "- {source: s, target: a}\n- {source: a, target: o}\n",
    )
    assert only_errors(folder, "in.yaml", text) == [
        "in.yaml: transform.nodes[1].data: node 'a' (filter): operator 'in' needs `value` to be a "
        "non-empty list; fix the node's settings"
    ]


def test_bad_computed_expressions(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: bad, type: filter, data: {column: nope, operator: is_null}}
        - {id: syntax, type: computed, data: {columns: [{name: x, expression: "amount + ", resultType: DOUBLE}]}}
        - {id: two, type: computed, data: {columns: [{name: y, expression: "1) AS DOUBLE); DROP TABLE t; SELECT CAST((1", resultType: DOUBLE}]}}
        - {id: type, type: computed, data: {columns: [{name: z, expression: "1", resultType: MONEY}]}}
        - {id: o, type: destination}
        """,  # noqa: E501
        """\
        - {source: s, target: bad}
        - {source: bad, target: syntax}
        - {source: syntax, target: two}
        - {source: two, target: type}
        - {source: type, target: o}
        """,
    )
    assert only_errors(folder, "k.yaml", text) == [
        "k.yaml: transform.nodes[1].data: node 'bad' (filter): unknown column 'nope'; the input "
        "has id, status, amount; fix the node's settings",
        "k.yaml: transform.nodes[2].data: node 'syntax' (computed): expression of 'x' is not "
        'valid SQL: Parser Error: syntax error at or near ")"; fix the node\'s settings',
        "k.yaml: transform.nodes[3].data: node 'two' (computed): expression of 'y' must be a "
        "single SELECT (over the relation named input); fix the node's settings",
        "k.yaml: transform.nodes[4].data: node 'type' (computed): result type 'MONEY' is not "
        "supported; use one of DOUBLE, BIGINT, VARCHAR, BOOLEAN, TIMESTAMP, DATE, DECIMAL(p,s) "
        "(DECIMAL precision 1-38, scale <= precision); fix the node's settings",
    ]


def test_computed_expression_naming_an_unknown_column(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: c, type: computed, data: {columns: [{name: x, expression: "nope + 1", resultType: DOUBLE}]}}
        - {id: o, type: destination}
        """,  # noqa: E501
        "- {source: s, target: c}\n- {source: c, target: o}\n",
    )
    assert only_errors(folder, "n.yaml", text) == [
        "n.yaml: transform.nodes[1].data: node 'c' (computed): Binder Error: Referenced column "
        '"nope" not found in FROM clause!; fix the node\'s settings'
    ]


def test_sql_node_must_be_one_select(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: q, type: sql, data: {query: "DELETE FROM input"}}
        - {id: o, type: destination}
        """,
        "- {source: s, target: q}\n- {source: q, target: o}\n",
    )
    assert only_errors(folder, "q.yaml", text) == [
        "q.yaml: transform.nodes[1].data: node 'q' (sql): query must be a single SELECT (over the "
        "relation named input); fix the node's settings"
    ]


def test_sql_node_reading_a_file_fails_at_load(folder):
    text = pipeline_with(
        """\
        - {id: s, type: source, data: {table: orders}}
        - {id: q, type: sql, data: {query: "SELECT * FROM read_csv('/etc/passwd')"}}
        - {id: o, type: destination}
        """,
        "- {source: s, target: q}\n- {source: q, target: o}\n",
    )
    assert only_errors(folder, "q.yaml", text) == [
        "q.yaml: transform.nodes[1].data: node 'q' (sql): Permission Error: Cannot access file "
        '"/etc/passwd" - file system operations are disabled by configuration; fix the node\'s '
        "settings"
    ]


def test_upsert_without_key(folder):
    text = """\
    name: u
    source: {connection: orders_csv, tables: [orders]}
    destination: {connection: warehouse, load_mode: upsert}
    """
    assert only_errors(folder, "u.yaml", text) == [
        "u.yaml: destination.upsert_key: load_mode upsert needs an upsert_key; list the "
        "column(s) that identify a row, e.g. [id]"
    ]


def test_incremental_without_key(folder):
    text = """\
    name: inc
    source: {connection: orders_csv, tables: [orders], sync_mode: incremental}
    destination: {connection: warehouse, load_mode: append}
    """
    assert only_errors(folder, "inc.yaml", text) == [
        "inc.yaml: source.incremental_key: incremental sync needs an incremental_key; name the "
        "column that grows with every insert or update, e.g. updated_at"
    ]


def test_incremental_with_replace_and_unknown_keys(folder):
    text = """\
    name: inc
    source: {connection: orders_csv, tables: [orders], sync_mode: incremental,
             incremental_key: updated, primary_key: [id, oid]}
    destination: {connection: warehouse}
    """
    assert only_errors(folder, "inc.yaml", text) == [
        "inc.yaml: destination.load_mode: incremental sync with load_mode replace keeps only "
        "each run's new rows; use append or upsert, or sync_mode: full",
        "inc.yaml: source.incremental_key: table 'orders' has no column 'updated'; use one of: "
        "id, status, amount",
        "inc.yaml: source.primary_key: table 'orders' has no column 'oid'; use one of: id, "
        "status, amount",
    ]


@pytest.mark.parametrize("schedule", ["61 * * * *", "* * * *", "weekly", "0 0 * * * *"])
def test_bad_cron(folder, schedule):
    text = f"""\
    name: s
    source: {{connection: orders_csv, tables: [orders]}}
    destination: {{connection: warehouse}}
    schedule: "{schedule}"
    """
    assert only_errors(folder, "s.yaml", text) == [
        f"s.yaml: schedule: {schedule!r} is not a schedule; use hourly, daily or a 5-field cron "
        "string such as '30 6 * * 1-5'"
    ]


@pytest.mark.parametrize("schedule", ["hourly", "daily", "30 6 * * 1-5", "*/15 * * * *"])
def test_good_schedules(folder, schedule):
    write(
        folder,
        "s.yaml",
        f"""\
        name: s
        source: {{connection: orders_csv, tables: [orders]}}
        destination: {{connection: warehouse}}
        schedule: "{schedule}"
        timezone: Europe/Berlin
        """,
    )
    project = load_project(folder)
    assert project.errors == {}
    assert project.get("s").pipeline.schedule == schedule


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "utc+1", "../etc/passwd"])
def test_bad_timezone(folder, timezone):
    text = f"""\
    name: t
    source: {{connection: orders_csv, tables: [orders]}}
    destination: {{connection: warehouse}}
    timezone: "{timezone}"
    """
    assert only_errors(folder, "t.yaml", text) == [
        f"t.yaml: timezone: unknown timezone {timezone!r}; use an IANA name such as UTC or "
        "Europe/Berlin"
    ]


def test_duplicate_pipeline_names_across_files(folder):
    write(folder, "a.yaml", VALID.format(name="same"))
    write(folder, "b.yaml", VALID.format(name="same"))
    project = load_project(folder)
    assert [(p.pipeline.name, p.file.name) for p in project.pipelines] == [("same", "a.yaml")]
    assert {f: [str(e) for e in errs] for f, errs in project.errors.items()} == {
        "b.yaml": [
            "b.yaml: name: pipeline name 'same' is already used by a.yaml; give each pipeline a "
            "unique name"
        ]
    }


def test_all_errors_of_one_file_are_reported_at_once(folder):
    text = """\
    name: k
    source: {connection: orders_csv, tables: [orders], sync_mode: incremental}
    destination: {connection: warehouse, load_mode: upsert}
    schedule: "61 * * * *"
    timezone: Mars/Olympus
    """
    assert only_errors(folder, "k.yaml", text) == [
        "k.yaml: source.incremental_key: incremental sync needs an incremental_key; name the "
        "column that grows with every insert or update, e.g. updated_at",
        "k.yaml: destination.upsert_key: load_mode upsert needs an upsert_key; list the "
        "column(s) that identify a row, e.g. [id]",
        "k.yaml: schedule: '61 * * * *' is not a schedule; use hourly, daily or a 5-field cron "
        "string such as '30 6 * * 1-5'",
        "k.yaml: timezone: unknown timezone 'Mars/Olympus'; use an IANA name such as UTC or "
        "Europe/Berlin",
    ]


def test_one_bad_file_does_not_stop_the_valid_ones(folder):
    write(folder, "a_good.yaml", VALID.format(name="first"))
    write(folder, "b_bad.yaml", "name: [unclosed\n")
    write(folder, "c_bad.yaml", VALID.format(name="broken").replace("daily", "never"))
    write(folder, "d_good.json", VALID_JSON)
    write(folder, "notes.txt", "not a pipeline")
    project = load_project(folder)
    assert [p.pipeline.name for p in project.pipelines] == ["first", "second"]
    assert sorted(project.errors) == ["b_bad.yaml", "c_bad.yaml"]
    assert [str(e) for e in project.errors["c_bad.yaml"]] == [
        "c_bad.yaml: schedule: 'never' is not a schedule; use hourly, daily or a 5-field cron "
        "string such as '30 6 * * 1-5'"
    ]
    with pytest.raises(KeyError, match="valid pipelines: first, second"):
        project.get("broken")


VALID_JSON = """\
{"name": "second",
 "sourceConfig": {"connection": "orders_csv", "tables": ["orders"]},
 "destinationConfig": {"connection": "warehouse", "loadMode": "append"}}
"""


def test_bad_connections_file_is_reported(folder):
    (folder / "connections.yaml").write_text(
        "good:\n  connector: csv\n  config: {path: data/orders.csv}\nbad:\n  config: {}\n"
    )
    write(
        folder,
        "p.yaml",
        """\
        name: p
        source: {connection: good, tables: [orders]}
        destination: {connection: bad}
        """,
    )
    assert errors(folder) == {
        "connections.yaml": ["connections.yaml: bad.connector: Field required; required; add it"],
        "p.yaml": [
            "p.yaml: destination.connection: unknown connection 'bad'; add it to "
            "connections.yaml or use one of: good"
        ],
    }


# --- find_cycle --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "edges", "expected"),
    [
        (["a", "b", "c"], [("a", "b"), ("b", "c")], None),
        (["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], None),
        (["a", "b"], [("a", "b"), ("b", "a")], ["a", "b", "a"]),
        (["a"], [("a", "a")], ["a", "a"]),
        (["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")], ["a", "b", "c", "a"]),
        # The path starts where the cycle starts, not at the first node visited.
        (
            ["s", "x", "y", "z"],
            [("s", "x"), ("x", "y"), ("y", "z"), ("z", "x")],
            ["x", "y", "z", "x"],
        ),
        (["s", "t", "a", "b"], [("s", "t"), ("a", "b"), ("b", "a")], ["a", "b", "a"]),
        # Edges to unknown nodes are ignored (reported elsewhere).
        (["a", "b"], [("a", "ghost"), ("ghost", "a"), ("a", "b")], None),
        ([], [], None),
    ],
)
def test_find_cycle(nodes, edges, expected):
    assert find_cycle(nodes, edges) == expected
