"""DPSynthHook: where a dpsynth task reads and writes.

It resolves, from Airflow connections and the ``[dpsynth]`` config section:

* the warehouse, as a SQLAlchemy engine: an Airflow connection whose hook offers
  ``get_sqlalchemy_engine`` (common-sql's ``DbApiHook``: postgres, mysql, ...), else a URL built
  from the connection's fields; with no connection, the embedded SQLite warehouse
  ``{home}/warehouse.db``;
* the object store (``file://`` or ``s3://``; for S3, the client comes from the amazon provider's
  ``S3Hook(aws_conn_id)`` when it is installed, so every setting of the AWS connection applies);
* the privacy ledger (``ledger_conn_id``: an Airflow SQL connection; else ``ledger_uri``, else
  ``[dpsynth] ledger_uri``, else ``{home}/ledger.db``).

Each setting comes from the hook's argument, else from the ``dpsynth`` connection named by
``dpsynth_conn_id`` (the connection type this hook registers, see
:mod:`synth_provider.hooks.connection`), else from the ``[dpsynth]`` config, else the embedded
default.

Heavy imports (SQLAlchemy engines, boto3, synth_core) happen inside the methods.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from synth_provider.hooks.connection import CONN_FIELD_TEXT, CONN_TYPE, HIDDEN_FIELDS, HOOK_NAME

if TYPE_CHECKING:
    import sqlalchemy as sa

    from synth_core.ledger import PrivacyLedger
    from synth_core.object_store import ObjectStore

#: Airflow connection types → SQLAlchemy drivers, for connections whose hook gives no engine.
SQLALCHEMY_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "sqlite": "sqlite",
    "mssql": "mssql+pymssql",
}


def dpsynth_home() -> Path:
    """The folder of the embedded defaults: ``[dpsynth] home`` (env ``AIRFLOW__DPSYNTH__HOME``)."""
    from airflow.sdk import conf

    raw = conf.get("dpsynth", "home", fallback=None) or os.environ.get("DPSYNTH_HOME") or "~/dpsynth"
    return Path(os.path.expanduser(raw)).resolve()


class DPSynthHook(BaseHook):
    """Resolves the warehouse engine, object store and privacy ledger of a dpsynth task.

    Args:
        warehouse_conn_id: Airflow connection of the warehouse; ``None``: the dpsynth
            connection's, else the embedded SQLite file.
        object_store_uri: root URI for dpsynth's objects; ``None``: the dpsynth connection's, else
            ``[dpsynth] object_store_uri``, else ``file://{home}/objects``.
        aws_conn_id: Airflow (amazon) connection for ``s3://`` roots; ``None``: the dpsynth
            connection's, else boto3's default chain. Without the amazon provider: login/password
            are the key id/secret, extra ``endpoint_url`` and ``region_name``.
        ledger_uri: SQLAlchemy URL of the privacy ledger (used when no ledger connection is set).
        ledger_conn_id: Airflow SQL connection of the privacy ledger (its hook's engine, as for
            the warehouse); ``None``: the dpsynth connection's, else ``ledger_uri``.
        dpsynth_conn_id: a ``dpsynth`` connection supplying the settings not given here.
    """

    conn_name_attr = "dpsynth_conn_id"
    default_conn_name = "dpsynth_default"
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(
        self,
        *,
        warehouse_conn_id: str | None = None,
        object_store_uri: str | None = None,
        aws_conn_id: str | None = None,
        ledger_uri: str | None = None,
        ledger_conn_id: str | None = None,
        dpsynth_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.dpsynth_conn_id = dpsynth_conn_id
        settings = self._dpsynth_settings(dpsynth_conn_id)
        self.warehouse_conn_id = warehouse_conn_id or settings.get("warehouse_conn_id")
        self.object_store_uri = object_store_uri or settings.get("object_store_uri")
        self.aws_conn_id = aws_conn_id or settings.get("aws_conn_id")
        self.ledger_uri = ledger_uri
        self.ledger_conn_id = ledger_conn_id or settings.get("ledger_conn_id")

    # -- the dpsynth connection type -------------------------------------------------------------
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's standard fields (all hidden: a dpsynth connection uses extras).

        Airflow 3.2+ reads the same from the provider info (``ui-field-behaviour``)."""
        return {"hidden_fields": list(HIDDEN_FIELDS), "relabeling": {}, "placeholders": {}}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection form's extra fields, as WTForms fields (needs flask-appbuilder).

        Airflow 3.2+ reads the same from the provider info (``conn-fields``) and never calls this."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import StringField

        return {
            name: StringField(lazy_gettext(label), widget=BS3TextFieldWidget(), description=text)
            for name, (label, text) in CONN_FIELD_TEXT.items()
        }

    def _dpsynth_settings(self, conn_id: str | None) -> dict[str, str]:
        """The non-empty extra fields of the dpsynth connection ``conn_id`` (none when ``None``)."""
        if conn_id is None:
            return {}
        conn = self.get_connection(conn_id)
        if (conn.conn_type or "") != CONN_TYPE:
            raise ValueError(
                f"connection {conn_id!r} has type {conn.conn_type!r}; dpsynth_conn_id needs a "
                f"{CONN_TYPE!r} connection"
            )
        extra = conn.extra_dejson or {}
        out: dict[str, str] = {}
        for name in CONN_FIELD_TEXT:
            # older UIs store form fields as extra__<conn_type>__<name>
            value = extra.get(name) or extra.get(f"extra__{CONN_TYPE}__{name}")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"connection {conn_id!r}: extra field {name!r} must be a string")
            if value and value.strip():
                out[name] = value.strip()
        return out

    # -- warehouse -------------------------------------------------------------------------------
    def get_warehouse_engine(self) -> sa.engine.Engine:
        import sqlalchemy as sa

        if self.warehouse_conn_id is None:
            path = dpsynth_home() / "warehouse.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            return sa.create_engine(sa.URL.create("sqlite", database=str(path)), hide_parameters=True)
        return self.sql_engine(self.warehouse_conn_id)

    def sql_engine(self, conn_id: str) -> sa.engine.Engine:
        """A SQLAlchemy engine for the Airflow SQL connection ``conn_id``: its hook's
        ``get_sqlalchemy_engine`` when it has one, else one built from its fields."""
        import sqlalchemy as sa

        conn = self.get_connection(conn_id)
        try:
            hook = conn.get_hook()
        except Exception as exc:  # the connection type's provider is not installed
            self.log.info(
                "no hook for connection type %r (%s); building the URL from its fields", conn.conn_type, exc
            )
            hook = None
        if hook is not None and hasattr(hook, "get_sqlalchemy_engine"):
            return hook.get_sqlalchemy_engine()
        return sa.create_engine(self.sqlalchemy_url(conn), hide_parameters=True)

    @staticmethod
    def sqlalchemy_url(conn: Any) -> sa.URL:
        """A SQLAlchemy URL from an Airflow connection's fields (not ``get_uri()``: that gives
        ``postgres://``, which SQLAlchemy 2 rejects)."""
        import sqlalchemy as sa

        conn_type = (conn.conn_type or "").lower()
        extra = conn.extra_dejson or {}
        driver = extra.get("sqlalchemy_scheme") or SQLALCHEMY_DRIVERS.get(conn_type)
        if driver is None:
            raise ValueError(
                f"connection {conn.conn_id!r} has type {conn_type!r}: set extra 'sqlalchemy_scheme' "
                "(e.g. 'snowflake') or use a connection type whose hook provides a SQLAlchemy engine"
            )
        if driver == "sqlite":
            return sa.URL.create("sqlite", database=conn.host or conn.schema or None)
        return sa.URL.create(
            driver,
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        )

    # -- object store ----------------------------------------------------------------------------
    def object_store_root(self) -> str:
        from airflow.sdk import conf

        from synth_core.object_store import as_uri  # literal file:// URIs: keys are never URL-decoded

        root = self.object_store_uri or conf.get("dpsynth", "object_store_uri", fallback="") or ""
        if not root:
            root = as_uri(dpsynth_home() / "objects")
        elif "://" not in root:
            root = as_uri(root)
        return root.rstrip("/")

    def get_object_store(self) -> ObjectStore:
        """The object store; for ``s3://`` roots, the S3 client of ``aws_conn_id``.

        With the amazon provider installed, the client is ``S3Hook(aws_conn_id).get_client_type``:
        the connection's endpoint (``endpoint_url``, ``service_config.s3.endpoint_url``), region,
        role assumption, profile, ``verify`` and ``config_kwargs`` apply, and temporary
        credentials refresh while the task runs. dpsynth's default timeouts and retry budget
        (:class:`~synth_core.object_store.S3Options`: a dead endpoint fails in under 30 s with a
        retryable error) sit under the connection's ``config_kwargs``, which win where they say
        otherwise. Without the amazon provider, the connection's login/password are the key
        id/secret and its extra may hold ``endpoint_url`` and ``region_name``. No
        ``aws_conn_id``: boto3's default credential chain.
        """
        from synth_core.object_store import ObjectStore, S3Options

        if self.aws_conn_id is None:
            return ObjectStore()
        try:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        except ImportError:
            return ObjectStore(self._s3_options_from_fields())
        s3_hook = S3Hook(aws_conn_id=self.aws_conn_id)

        def make_client(defaults: Any) -> Any:
            # the connection's config_kwargs (timeouts, retries, addressing...) override ours
            return s3_hook.get_client_type(config=defaults.merge(s3_hook.config))

        return ObjectStore(
            S3Options(
                endpoint_url=s3_hook.conn_config.get_service_endpoint_url("s3"),
                region_name=s3_hook.conn_region_name,
                client_factory=make_client,
            )
        )

    def _s3_options_from_fields(self) -> Any:
        from synth_core.object_store import S3Options

        assert self.aws_conn_id is not None
        conn = self.get_connection(self.aws_conn_id)
        extra = conn.extra_dejson or {}
        s3_extra = (extra.get("service_config") or {}).get("s3") or {}
        return S3Options(
            endpoint_url=s3_extra.get("endpoint_url") or extra.get("endpoint_url"),
            region_name=extra.get("region_name"),
            aws_access_key_id=conn.login or extra.get("aws_access_key_id"),
            aws_secret_access_key=conn.password or extra.get("aws_secret_access_key"),
            aws_session_token=extra.get("aws_session_token"),
        )

    # -- ledger ----------------------------------------------------------------------------------
    def get_ledger(self) -> PrivacyLedger:
        from airflow.sdk import conf

        from synth_core.ledger import PrivacyLedger

        if self.ledger_conn_id is not None:
            return PrivacyLedger(self.sql_engine(self.ledger_conn_id))
        url = self.ledger_uri or conf.get("dpsynth", "ledger_uri", fallback="") or ""
        if not url:
            url = f"sqlite:///{dpsynth_home() / 'ledger.db'}"
        return PrivacyLedger(url)
