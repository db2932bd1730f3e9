"""The Airflow plugin: the budget page's FastAPI app and its link in the Airflow UI's navigation.

Registered in the provider info (``plugins``), so installing the provider is enough. FastAPI and
synth_core are imported by the api-server when it loads plugins, not when a DAG is parsed.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from synth_provider.plugins.budget_view import URL_PREFIX, create_app


class DPSynthPlugin(AirflowPlugin):
    """Mounts the privacy-budget page at ``/dpsynth/`` and adds "Privacy budgets" to the nav."""

    name = "dpsynth"
    fastapi_apps: list[Any] = [  # noqa: RUF012 (AirflowPlugin declares it so)
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "dpsynth privacy budgets"}
    ]
    external_views: list[Any] = [  # noqa: RUF012
        {
            "name": "Privacy budgets",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "dpsynth",
        }
    ]
