"""The "Synthetic data report" extra link on the validate and publish operators.

The task pushes its report's object URI; the link opens it through the api-server's dpsynth plugin
(:mod:`synth_provider.plugins.budget_view`): a ``file://`` report is served by the api-server (a
browser will not open ``file://`` from the web UI) and an S3 report is presigned when the link is
clicked, not when the task ran (so the link does not expire).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.xcom import BaseXCom

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key the operators push the report's object URI under
REPORT_URL_XCOM_KEY = "dpsynth_report_url"


class SyntheticDataReportLink(BaseOperatorLink):
    """Opens the release's shareable report through the api-server (see the module docstring)."""

    name: ClassVar[str] = "Synthetic data report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return report_link(BaseXCom.get_value(ti_key=ti_key, key=REPORT_URL_XCOM_KEY))


def report_link(pushed: Any) -> str:
    """The link for what a task pushed: an object URI becomes the plugin's report page; anything
    else (an HTTPS URL an older version presigned) is returned as it is."""
    from synth_provider.plugins.budget_view import report_page_url

    if not pushed:
        return ""
    text = str(pushed)
    return report_page_url(text) if text.startswith(("file://", "s3://")) else text


def persist_report_url(context: Context, store: Any, report_uri: str) -> str:
    """Push the report's object URI to XCom for the link (``store`` is kept for the callers)."""
    ti = context.get("ti")
    if ti is not None:  # absent when an operator's execute() is called outside a task run
        ti.xcom_push(key=REPORT_URL_XCOM_KEY, value=report_uri)
    return report_uri
