"""The HubSpot source against a fake CRM v3 API on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
import pytest
import yaml

from connectors.base import ConnectorError, CursorState
from connectors.sources.hubspot import HubSpotSource
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.project import PROJECT_ROOT
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.fake_http import Response, serve
from tests.support.fake_hubspot import RATE_LIMITED, FakeHubSpot, crm_object, when


def contact(contact_id: int, modified_at: int) -> dict:
    return crm_object(contact_id, "lastmodifieddate", modified_at, email=f"c{contact_id}@x.io")


def deal(deal_id: int, modified_at: int) -> dict:
    return crm_object(deal_id, "hs_lastmodifieddate", modified_at, dealname=f"Deal {deal_id}",
                      amount=f"{deal_id}000")  # fmt: skip


def at(minute: int) -> dt.datetime:
    return dt.datetime.fromisoformat(when(minute))


def ms(minute: int) -> str:
    return str(int(at(minute).timestamp()) * 1000)


@pytest.fixture
def hubspot():
    fake = FakeHubSpot()
    with serve(fake.server):
        yield fake


def source(hubspot: FakeHubSpot, name: str = "crm", **config) -> HubSpotSource:
    settings = {"access_token": hubspot.token, "base_url": hubspot.server.url,
                "requests_per_second": 1000, "page_size": 2}  # fmt: skip
    return HubSpotSource(name, {**settings, **config})


def rows(extraction, *columns: str) -> list[tuple]:
    table = pa.Table.from_batches(list(extraction), schema=extraction.schema)
    return [tuple(row[c] for c in columns) for row in table.to_pylist()]


def search_starts(hubspot: FakeHubSpot) -> list[str]:
    """The GTE value of each search query that starts a window (asked without `after`)."""
    bodies = [r.json() for r in hubspot.server.requests if r.path.endswith("/search")]
    return [b["filterGroups"][0]["filters"][0]["value"] for b in bodies if "after" not in b]


def test_discover_lists_objects_with_their_properties_and_owners(hubspot):
    tables = {t.name: t.schema for t in source(hubspot).discover()}
    assert list(tables) == ["contacts", "companies", "deals", "tickets", "owners"]
    assert tables["contacts"].names == [
        "id", "createdAt", "updatedAt", "archived", "email", "firstname", "lastname", "phone",
        "company", "lifecyclestage", "hubspot_owner_id", "createdate", "lastmodifieddate",
    ]  # fmt: skip
    assert tables["deals"].field("hs_lastmodifieddate").type == pa.timestamp("us", tz="UTC")
    custom = source(hubspot, properties={"deals": "amount, dealstage"}).discover()[2].schema
    assert custom.names[4:] == ["amount", "dealstage", "hs_lastmodifieddate"]
    assert hubspot.server.requests == []


def test_check_names_the_portal(hubspot):
    assert source(hubspot).check() == "HubSpot account 62515 reachable"


def test_full_sync_pages_through_the_list_endpoint(hubspot):
    hubspot.objects["contacts"] = [contact(i, modified_at=10 - i) for i in range(1, 6)]
    extraction = source(hubspot, properties={"contacts": ["email"]}).extract("contacts")
    assert rows(extraction, "id", "email", "createdAt", "lastmodifieddate", "archived") == [
        (str(i), f"c{i}@x.io", at(0), at(10 - i), False) for i in range(1, 6)
    ]
    requests = hubspot.server.requests
    assert [r.param("after") for r in requests] == [None, "3", "5"]
    assert requests[0].query == {"limit": ["2"], "properties": ["email,lastmodifieddate"]}
    assert requests[0].headers["authorization"] == "Bearer pat-na1-secret"


def test_incremental_searches_from_the_cursor(hubspot):
    hubspot.objects["deals"] = [deal(1, 1), deal(2, 5), deal(3, 5), deal(4, 7), deal(5, 9)]
    start = CursorState(cursor=at(5), boundary_keys=(("2",),))
    extraction = source(hubspot).extract(
        "deals", "hs_lastmodifieddate", start=start, primary_key=["id"]
    )
    assert rows(extraction, "id", "dealname", "amount", "hs_lastmodifieddate") == [
        ("3", "Deal 3", "3000", at(5)), ("4", "Deal 4", "4000", at(7)),
        ("5", "Deal 5", "5000", at(9)),
    ]  # fmt: skip
    assert extraction.state.cursor == at(9)
    first = hubspot.server.requests[0].json()
    assert first["filterGroups"] == [
        {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": ms(5)}]}
    ]
    assert first["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert [r.json().get("after") for r in hubspot.server.requests] == [None, "2"]


def test_search_past_the_result_cap_continues_in_new_windows(hubspot):
    hubspot.search_cap = 5
    modified = [1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 8, 9]
    hubspot.objects["contacts"] = [contact(i, m) for i, m in enumerate(modified, start=1)]
    crm = source(hubspot, search_result_cap=5)
    extraction = crm.extract("contacts", "lastmodifieddate", start=CursorState(cursor=at(0)))
    assert rows(extraction, "id") == [(str(i),) for i in range(1, 13)]
    assert extraction.state.cursor == at(9)
    # Each new window starts at the last modified time the previous one reached.
    assert search_starts(hubspot) == [ms(0), ms(5), ms(7)]


def test_more_records_at_one_instant_than_the_cap_is_a_clear_error(hubspot):
    hubspot.search_cap = 5
    hubspot.objects["contacts"] = [contact(i, 3) for i in range(1, 8)]
    with pytest.raises(ConnectorError) as error:
        list(source(hubspot, search_result_cap=5).read("contacts", "lastmodifieddate", at(0)))
    assert str(error.value) == (
        "connection 'crm': table 'contacts': more than 5 records share one lastmodifieddate "
        "value, which HubSpot search cannot page past; run a full sync of this table"
    )


def test_owners_read_in_full_only(hubspot):
    hubspot.owners = [
        {"id": str(i), "email": f"o{i}@x.io", "firstName": "O", "lastName": str(i),
         "userId": 900 + i, "createdAt": when(0), "updatedAt": when(i), "archived": False,
         "teams": [{"id": "7", "name": "Sales", "primary": True}]}
        for i in range(1, 4)
    ]  # fmt: skip
    extraction = source(hubspot).extract("owners")
    assert rows(extraction, "id", "email", "userId", "updatedAt", "teams") == [
        (str(i), f"o{i}@x.io", 900 + i, at(i), '[{"id": "7", "name": "Sales", "primary": true}]')
        for i in range(1, 4)
    ]
    with pytest.raises(ConnectorError) as error:
        source(hubspot).read("owners", "updatedAt", at(1))
    assert str(error.value) == (
        "connection 'crm': table 'owners' can only be read in full; set sync_mode: full for it"
    )


@pytest.mark.parametrize("interruption", [RATE_LIMITED, Response(429, "", {"Retry-After": "1"})])
def test_429_is_retried_with_or_without_retry_after(hubspot, interruption):
    hubspot.objects["tickets"] = [crm_object(1, "hs_lastmodifieddate", 1, subject="Help")]
    hubspot.server.interruptions.append(interruption)
    started = time.monotonic()
    assert rows(source(hubspot).extract("tickets"), "id", "subject") == [("1", "Help")]
    assert time.monotonic() - started >= (1.0 if "Retry-After" in interruption.headers else 0)
    assert len(hubspot.server.requests) == 2


def test_5xx_is_retried(hubspot):
    hubspot.objects["companies"] = [crm_object(1, "hs_lastmodifieddate", 1, name="Acme")]
    hubspot.server.interruptions.append(Response(502, {"status": "error", "message": "Bad"}))
    assert rows(source(hubspot).extract("companies"), "id", "name") == [("1", "Acme")]
    assert len(hubspot.server.requests) == 2


def test_rejected_token_is_a_clear_error_without_the_token(hubspot):
    with pytest.raises(ConnectorError) as error:
        source(hubspot, access_token="pat-na1-wrong").extract("deals")
    assert str(error.value) == (
        "credentials rejected for connection 'crm' (HTTP 401 on GET /crm/v3/objects/deals); "
        "check access_token (and its scopes)"
    )
    assert "pat-na1-wrong" not in str(error.value)


def test_empty_table_keeps_its_schema_and_state(hubspot):
    start = CursorState(cursor=at(1))
    extraction = source(hubspot).extract("tickets", "hs_lastmodifieddate", start=start)
    assert list(extraction) == []
    assert extraction.schema.names[:4] == ["id", "createdAt", "updatedAt", "archived"]
    assert extraction.state == start


def test_incremental_key_must_be_the_modified_property(hubspot):
    with pytest.raises(ConnectorError) as error:
        source(hubspot).read("contacts", "hs_lastmodifieddate", at(1))
    assert str(error.value) == (
        "connection 'crm': table 'contacts' can be read incrementally only on lastmodifieddate; "
        "set incremental_key: lastmodifieddate"
    )


def test_properties_for_unknown_objects_are_rejected(hubspot):
    with pytest.raises(ConnectorError) as error:
        source(hubspot, properties={"leads": ["email"]})
    assert str(error.value) == (
        "connection 'crm': properties given for unknown object(s) leads; use contacts, "
        "companies, deals, tickets"
    )


def test_example_pipeline_parses_and_reads_real_tables(monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-example")
    text = (PROJECT_ROOT / "pipelines/examples/hubspot.yaml").read_text()
    source = Pipeline.model_validate(yaml.safe_load(text)).source
    config = ConnectionSpec("example", "hubspot", source.config or {}).resolve()
    schemas = {t.name: t.schema for t in HubSpotSource("example", config).discover()}
    assert (source.connector, config["access_token"]) == ("hubspot", "pat-example")
    assert all(source.incremental_key in schemas[t.name].names for t in source.tables)
