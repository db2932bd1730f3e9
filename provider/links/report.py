"""The "Synthetic data report" extra link on the validate and publish operators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.xcom import BaseXCom

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key the operators push the report's URL under
REPORT_URL_XCOM_KEY = "dpsynth_report_url"
#: lifetime of a presigned S3 link to the report (seconds; S3 allows at most 7 days)
PRESIGNED_SECONDS = 7 * 24 * 3600


class SyntheticDataReportLink(BaseOperatorLink):
    """Opens the release's shareable report: a ``file://`` URL, or a presigned HTTPS URL for S3."""

    name: ClassVar[str] = "Synthetic data report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = BaseXCom.get_value(ti_key=ti_key, key=REPORT_URL_XCOM_KEY)
        return str(url) if url else ""


def persist_report_url(context: Context, store: Any, report_uri: str) -> str:
    """Push the link target to XCom: S3 reports get a presigned URL, local ones their file URI."""
    url = (
        store.presigned_url(report_uri, expires_s=PRESIGNED_SECONDS)
        if report_uri.startswith("s3://")
        else report_uri
    )
    ti = context.get("ti")
    if ti is not None:  # absent when an operator's execute() is called outside a task run
        ti.xcom_push(key=REPORT_URL_XCOM_KEY, value=url)
    return str(url)
