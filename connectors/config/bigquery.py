"""The `bigquery` destination's config."""

from __future__ import annotations

from connectors.config.common import ServiceAccountJson
from connectors.config.model import ConnectorConfig, Text, option


class BigQueryConfig(ConnectorConfig):
    """One BigQuery dataset, written with a service account."""

    project: Text = option(..., "Google Cloud project ID.")
    dataset: Text = option(..., "Dataset the tables and cursor states live in.")
    service_account_json: ServiceAccountJson = option(
        ..., "Service-account key: its JSON text or mapping, or a path to the key file."
    )
    location: Text = option("US", "Dataset location, such as US, EU or europe-west1.")
    base_url: str | None = option(
        None, "API address, to go through a proxy or a test server.", shown="Google's"
    )
