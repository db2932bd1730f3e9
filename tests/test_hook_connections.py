"""The dpsynth connection type and how the hook honours connections: registered with Airflow's
providers manager, S3 through the amazon provider's client factory (the connection's settings
over dpsynth's fail-fast defaults; a real S3 server), a dead endpoint failing retryably, the
ledger from an Airflow SQL connection (real PostgreSQL)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from s3_server import S3Bucket, S3Server

from synth_core.object_store import ObjectStore, ObjectStoreUnavailableError, S3Options, join_uri
from synth_provider.hooks.connection import CONN_FIELD_TEXT, HIDDEN_FIELDS
from synth_provider.hooks.dpsynth import DPSynthHook

PG_ADMIN_URL = os.environ.get("DPSYNTH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


# ------------------------------------------------------------------------------------------------
# the connection type


def test_dpsynth_connection_type_is_registered_with_its_form() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()  # the api-server's view: the connection form
    hook = ProvidersManagerTaskRuntime().hooks["dpsynth"]  # the workers' view: the hook class
    assert hook is not None
    assert (hook.hook_class_name, hook.connection_id_attribute_name) == (
        "synth_provider.hooks.dpsynth.DPSynthHook",
        "dpsynth_conn_id",
    )
    assert hook.hook_name == DPSynthHook.hook_name and hook.package_name == "airflow-provider-dpsynth"
    behaviour = manager.field_behaviours["dpsynth"]
    assert behaviour["hidden_fields"] == HIDDEN_FIELDS
    assert behaviour == DPSynthHook.get_ui_field_behaviour()
    widgets = {
        name: w for name, w in manager.connection_form_widgets.items() if name.startswith("extra__dpsynth__")
    }
    assert {w.field_name for w in widgets.values()} == set(CONN_FIELD_TEXT)
    for widget in widgets.values():
        assert widget.field["schema"]["title"] == CONN_FIELD_TEXT[widget.field_name][0]
        assert not widget.is_sensitive


def test_airflow_providers_hooks_lists_the_dpsynth_connection_type() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run(
        [str(airflow), "providers", "hooks", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=os.environ.copy(),
    )
    rows = json.loads(out.stdout[out.stdout.index("[") :])
    (row,) = [r for r in rows if r["connection_type"] == "dpsynth"]
    assert row["class"] == "synth_provider.hooks.dpsynth.DPSynthHook"
    assert (row["package_name"], row["conn_id_attribute_name"]) == (
        "airflow-provider-dpsynth",
        "dpsynth_conn_id",
    )
    assert row["hook_name"] == DPSynthHook.hook_name


def test_legacy_form_widgets_match_the_declared_fields() -> None:
    pytest.importorskip("wtforms", reason="Airflow 3.2+ reads conn-fields; the WTForms form is for older UIs")
    pytest.importorskip("flask_appbuilder")
    widgets = DPSynthHook.get_connection_form_widgets()
    assert set(widgets) == set(CONN_FIELD_TEXT)


def test_settings_come_from_the_arguments_then_the_dpsynth_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set_connection(
        monkeypatch,
        "my_dpsynth",
        conn_type="dpsynth",
        extra={
            "object_store_uri": "s3://bucket/dpsynth",
            "aws_conn_id": "my_aws",
            "ledger_conn_id": " my_ledger ",
            "extra__dpsynth__warehouse_conn_id": "my_warehouse",  # as older UIs store it
        },
    )
    hook = DPSynthHook(dpsynth_conn_id="my_dpsynth")
    assert (hook.object_store_uri, hook.aws_conn_id, hook.ledger_conn_id, hook.warehouse_conn_id) == (
        "s3://bucket/dpsynth",
        "my_aws",
        "my_ledger",
        "my_warehouse",
    )
    assert hook.object_store_root() == "s3://bucket/dpsynth"
    explicit = DPSynthHook(dpsynth_conn_id="my_dpsynth", object_store_uri="s3://other/x", aws_conn_id="a2")
    assert (explicit.object_store_uri, explicit.aws_conn_id) == ("s3://other/x", "a2")
    assert DPSynthHook().aws_conn_id is None  # no dpsynth connection: nothing is looked up

    _set_connection(monkeypatch, "not_dpsynth", conn_type="postgres", host="db")
    with pytest.raises(
        ValueError, match="'not_dpsynth' has type 'postgres'; dpsynth_conn_id needs a 'dpsynth'"
    ):
        DPSynthHook(dpsynth_conn_id="not_dpsynth")


# ------------------------------------------------------------------------------------------------
# S3 through the amazon provider


def test_s3_client_comes_from_the_aws_connection_with_its_config_kwargs(
    s3_server: S3Server, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_connection(
        monkeypatch,
        "seaweed",
        conn_type="aws",
        login=s3_server.access_key,
        password=s3_server.secret_key,
        extra={
            "region_name": s3_server.region,
            "service_config": {"s3": {"endpoint_url": s3_server.endpoint_url}},
            # the connection's own settings win over dpsynth's defaults...
            "config_kwargs": {"read_timeout": 11, "s3": {"addressing_style": "path"}},
        },
    )
    _set_connection(monkeypatch, "dp", conn_type="dpsynth", extra={"aws_conn_id": "seaweed"})
    hook = DPSynthHook(dpsynth_conn_id="dp", object_store_uri=s3_bucket.uri)
    store = hook.get_object_store()
    uri = store.put_bytes(join_uri(hook.object_store_root(), "x", "hello.txt"), b"hello")
    assert store.get_bytes(uri) == b"hello" and store.exists(uri)

    client = store._s3()
    config = client.meta.config
    assert config.read_timeout == 11 and config.s3 == {"addressing_style": "path"}
    # ...and the defaults apply where the connection says nothing
    defaults = S3Options()
    assert config.connect_timeout == defaults.connect_timeout_s
    assert config.retries == {"mode": "standard", "total_max_attempts": defaults.max_attempts}
    assert config.signature_version == "s3v4"
    assert client.meta.endpoint_url == s3_server.endpoint_url and client.meta.region_name == s3_server.region
    assert "airflow" in config.user_agent_extra.lower()  # made by the amazon provider's hook
    assert store.s3.endpoint_label() == s3_server.endpoint_url


class SilentServer:
    """A local TCP port that accepts connections and never answers (a frozen S3 endpoint).

    Bounded: it holds at most ``max_connections`` sockets and closes them all when stopped."""

    def __init__(self, max_connections: int = 32) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._max = max_connections
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if len(self.accepted) >= self._max:
                conn.close()
            else:
                self.accepted.append(conn)  # read nothing, answer nothing

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_endpoint() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


def test_a_dead_endpoint_fails_fast_with_a_retryable_error(
    silent_endpoint: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_connection(
        monkeypatch,
        "frozen_s3",
        conn_type="aws",
        login="AKIDEXAMPLE",
        password="secret-key-example",
        extra={"endpoint_url": f"http://127.0.0.1:{silent_endpoint.port}", "region_name": "us-east-1"},
    )
    store = DPSynthHook(aws_conn_id="frozen_s3", object_store_uri="s3://frozen/dpsynth").get_object_store()
    with pytest.raises(ObjectStoreUnavailableError, match=r"ReadTimeoutError.*a retry may succeed") as err:
        store.get_bytes("s3://frozen/dpsynth/x.bin")
    assert f"127.0.0.1:{silent_endpoint.port}" in str(err.value)
    assert "secret-key-example" not in str(err.value)
    # the default budget bounds the failure: every attempt connected and waited one read timeout
    config = store._s3().meta.config
    attempts = config.retries["total_max_attempts"]
    assert len(silent_endpoint.accepted) == attempts == 3
    # worst case: each attempt's read timeout plus botocore's jittered back-off (≤ 1 s, ≤ 2 s)
    assert attempts * config.read_timeout + (2 ** (attempts - 1) - 1) <= 30


def test_the_plain_s3_client_has_the_same_fail_fast_defaults(silent_endpoint: SilentServer) -> None:
    # the CLI and the pod entrypoint build the client without Airflow
    store = ObjectStore(
        S3Options(
            endpoint_url=f"http://127.0.0.1:{silent_endpoint.port}",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret-key-example",
        )
    )
    with pytest.raises(ObjectStoreUnavailableError, match="a retry may succeed"):
        store.exists("s3://frozen/x.bin")
    assert len(silent_endpoint.accepted) == 3


# ------------------------------------------------------------------------------------------------
# the ledger from an Airflow connection


@pytest.fixture
def ledger_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dpsynth_ledger_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def test_the_ledger_lives_behind_an_airflow_sql_connection(
    ledger_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = sa.make_url(PG_ADMIN_URL)
    _set_connection(
        monkeypatch,
        "ledger_pg",
        conn_type="postgres",
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        login=url.username or "postgres",
        schema=ledger_database,
    )
    _set_connection(monkeypatch, "dp_ledger", conn_type="dpsynth", extra={"ledger_conn_id": "ledger_pg"})
    monkeypatch.setenv("AIRFLOW__DPSYNTH__HOME", str(tmp_path))
    ledger = DPSynthHook(dpsynth_conn_id="dp_ledger", ledger_uri="sqlite:///ignored.db").get_ledger()
    assert ledger.engine.dialect.name == "postgresql" and ledger.engine.url.database == ledger_database
    assert ledger.keys() == []
    assert not (tmp_path / "ledger.db").exists() and not Path("ignored.db").exists()
