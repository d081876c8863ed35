"""Create the app's tables from `chalicelib.tables`, idempotently."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.settings import Settings
from chalicelib.tables import ALL_TABLES, TableDefinition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def ensure_table(client: DynamoDBClient, definition: TableDefinition, table_name: str) -> bool:
    """Create the table if missing and enable its TTL; returns True if it was created."""
    existing = set(client.list_tables()["TableNames"])  # small accounts; paginate if ever needed
    created = False
    if table_name not in existing:
        client.create_table(**definition.create_table_request(table_name))
        client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1})
        created = True
    if definition.ttl_attribute:
        ttl = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": definition.ttl_attribute},
            )
    return created


def ensure_tables(client: DynamoDBClient, settings: Settings) -> list[str]:
    """Ensure every table exists; returns the names of those created now."""
    return [
        definition.table_name(settings)
        for definition in ALL_TABLES
        if ensure_table(client, definition, definition.table_name(settings))
    ]
