"""Provider metadata for Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from synth_provider.hooks.connection import connection_type_info


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-dpsynth",
        "name": "dpsynth",
        "description": "Differentially private synthetic replacement tables: extract, train (DP-SGD), "
        "sample, validate (Great Expectations) and publish.",
        "integrations": [
            {
                "integration-name": "dpsynth",
                "external-doc-url": "https://github.com/dpsynth/airflow-provider-dpsynth",
                "tags": ["software"],
            }
        ],
        "operators": [
            {"integration-name": "dpsynth", "python-modules": ["synth_provider.operators.synthesize"]}
        ],
        "hooks": [{"integration-name": "dpsynth", "python-modules": ["synth_provider.hooks.dpsynth"]}],
        "connection-types": [connection_type_info()],
        "extra-links": ["synth_provider.links.report.SyntheticDataReportLink"],
        "plugins": [{"name": "dpsynth", "plugin-class": "synth_provider.plugins.plugin.DPSynthPlugin"}],
        "config": {
            "dpsynth": {
                "description": "Defaults of the dpsynth provider (the embedded warehouse, object store and ledger).",
                "options": {
                    "home": {
                        "description": "Folder of the embedded defaults: warehouse.db (SQLite), objects/ "
                        "(the local object store) and ledger.db (the privacy ledger).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/dpsynth",
                        "default": "~/dpsynth",
                    },
                    "object_store_uri": {
                        "description": "Root URI (file:// or s3://) for staged, model, report and published "
                        "objects when an operator is given none. Empty: {home}/objects.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://my-bucket/dpsynth",
                        "default": "",
                    },
                    "ui_conn_id": {
                        "description": "A dpsynth connection the privacy-budget page of the Airflow UI reads "
                        "its ledger and object store through. Empty: the other options of this section.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "dpsynth_default",
                        "default": "",
                    },
                    "ledger_uri": {
                        "description": "SQLAlchemy URL of the privacy ledger when an operator is given none. "
                        "Empty: sqlite:///{home}/ledger.db.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "postgresql+psycopg://user@host/db",
                        "default": "",
                    },
                },
            }
        },
    }
