"""The ``dpsynth`` Airflow connection type: its fields and form, declared once.

A ``dpsynth`` connection says where dpsynth keeps its own state, so a deployment sets it once
instead of on every operator: the object-store root, the AWS connection for ``s3://`` roots, the
Airflow SQL connection of the privacy ledger and a default warehouse connection. The standard
fields (host, login, password, ...) are unused and hidden. The values live in the connection's
extra, under the field names below (the UI writes them there).

Airflow 3.2+ reads the form from the provider info (``conn-fields``, ``ui-field-behaviour``:
:func:`synth_provider.get_provider_info.get_provider_info`) without importing the hook; the hook's
``get_ui_field_behaviour`` / ``get_connection_form_widgets`` give the same for older UIs. This
module is plain data: no Airflow import.
"""

from __future__ import annotations

from typing import Any

#: The connection type's name (``conn_type``) and its label in the UI.
CONN_TYPE = "dpsynth"
HOOK_NAME = "dpsynth (DP synthetic tables)"

#: Extra fields of a dpsynth connection: name → (label, description).
CONN_FIELD_TEXT: dict[str, tuple[str, str]] = {
    "object_store_uri": (
        "Object store URI",
        "Root (file:// or s3://) of staged, model, report and published objects. "
        "Empty: [dpsynth] object_store_uri, else {home}/objects.",
    ),
    "aws_conn_id": (
        "AWS connection id",
        "Amazon connection for s3:// roots (endpoint, region, role, config_kwargs apply). "
        "Empty: boto3's default credential chain.",
    ),
    "ledger_conn_id": (
        "Ledger connection id",
        "SQL connection (postgres, mysql, ...) holding the privacy ledger. "
        "Empty: [dpsynth] ledger_uri, else {home}/ledger.db.",
    ),
    "warehouse_conn_id": (
        "Warehouse connection id",
        "Default SQL connection of source and published tables when an operator names none. "
        "Empty: the embedded SQLite warehouse.",
    ),
}

#: The standard connection fields a dpsynth connection does not use.
HIDDEN_FIELDS = ["host", "schema", "port", "login", "password", "extra"]


def conn_fields() -> dict[str, dict[str, Any]]:
    """The ``conn-fields`` entry of the provider info (JSON schema per extra field)."""
    return {
        name: {"label": label, "description": text, "schema": {"type": ["string", "null"]}}
        for name, (label, text) in CONN_FIELD_TEXT.items()
    }


def ui_field_behaviour() -> dict[str, Any]:
    """The ``ui-field-behaviour`` entry of the provider info (kebab-case keys)."""
    return {"hidden-fields": list(HIDDEN_FIELDS), "relabeling": {}, "placeholders": {}}


def connection_type_info() -> dict[str, Any]:
    """The provider info's ``connection-types`` entry for the dpsynth connection."""
    return {
        "hook-class-name": "synth_provider.hooks.dpsynth.DPSynthHook",
        "hook-name": HOOK_NAME,
        "connection-type": CONN_TYPE,
        "conn-fields": conn_fields(),
        "ui-field-behaviour": ui_field_behaviour(),
    }


__all__ = [
    "CONN_FIELD_TEXT",
    "CONN_TYPE",
    "HIDDEN_FIELDS",
    "HOOK_NAME",
    "conn_fields",
    "connection_type_info",
    "ui_field_behaviour",
]
