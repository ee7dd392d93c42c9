"""Assembles the platform from settings and runs it: one process, one event loop, one port.

First start creates the data dir (0700), the master key, the administrator's access key and
``DIR/credentials`` (AWS shared-credentials INI, 0600); later starts reuse them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import uvicorn

from lamina.api import sigv4
from lamina.api.app import App, LambdaService, Observability
from lamina.api.downloads import Downloads
from lamina.api.lambda_aliases import AccountHandlers, AliasHandlers
from lamina.api.lambda_async import AsyncHandlers
from lamina.api.lambda_functions import FunctionHandlers
from lamina.api.lambda_invoke import InvokeHandlers
from lamina.api.lambda_layers import LayerHandlers
from lamina.api.lambda_permissions import PermissionHandlers
from lamina.api.logs_api import LogsHandlers, logs_service
from lamina.api.wire import ServiceModel
from lamina.control.aliases import Aliases
from lamina.control.archives import ArchiveLimits
from lamina.control.functions import Functions
from lamina.control.layers import Layers
from lamina.control.model import AccessKey
from lamina.iam.keys import ADMIN_KEY_SETTING, PRESIGN_KEY_SETTING, ensure_key, write_credentials
from lamina.identity import IdentityPlatform, build_identity
from lamina.invoke.asynchronous import AsyncInvocations, open_async
from lamina.invoke.concurrency import Concurrency
from lamina.invoke.queue import events_db_path
from lamina.invoke.service import InvokeService
from lamina.sandbox.bwrap import BwrapDriver
from lamina.settings import Settings
from lamina.store.artifacts import LocalArtifactStore
from lamina.store.keys import KeyRing
from lamina.store.metadata import MetadataStore
from lamina.store.sqlite import SqliteMetadataStore
from lamina.telemetry.history import HistoryStore
from lamina.telemetry.logs import LogStore
from lamina.telemetry.metrics import LambdaMetrics, event_queue_depth
from lamina.telemetry.otlp import OtlpExporter, endpoint_from_env
from lamina.telemetry.traces import TraceRecorder
from lamina.worker.code import CodeCache
from lamina.worker.pool import Pool
from lamina.worker.relay import RelayedPeers, RelayTarget
from lamina.worker.runtimes import Runtimes
from lamina.worker.scratch import Scratch
from lamina.worker.worker import Worker

log = logging.getLogger(__name__)

INVOKE_ASYNC_LIMIT = 262_144  # the deprecated InvokeAsync keeps its historical 256 KB limit


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Platform:
    settings: Settings
    keys: KeyRing
    store: MetadataStore
    functions: Functions
    app: App
    admin_key: AccessKey
    worker: Worker
    logs: LogStore
    scratch: Scratch
    driver: BwrapDriver
    asynchronous: AsyncInvocations
    ready: bool = False
    history: HistoryStore | None = None
    metrics: LambdaMetrics | None = None
    otlp: OtlpExporter | None = None
    identity: IdentityPlatform | None = None

    async def close(self) -> None:
        await self.asynchronous.close()
        await self.functions.settle()
        await self.worker.close()
        self.driver.close()  # waits for a spawn still in flight (a standby refill)
        self.driver.reclaim()  # anything such a spawn left behind
        self.driver.hierarchy.remove_parents()  # every env is gone: the parents are empty
        self.logs.close()
        if self.history is not None:
            self.history.close()
        self.scratch.close()
        self.store.close()


async def build(settings: Settings) -> Platform:
    os.umask(0o077)  # everything Lamina writes under the data dir is private to it
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    keys = KeyRing.load_or_create(settings.keys_dir)
    store = SqliteMetadataStore(settings.db_path, keys)
    artifacts = LocalArtifactStore(settings.artifacts_dir, keys)
    account_root = f"arn:aws:iam::{settings.account_id}:root"
    admin = ensure_key(store, ADMIN_KEY_SETTING, account_root)
    presign_key = ensure_key(
        store, PRESIGN_KEY_SETTING, f"arn:aws:iam::{settings.account_id}:role/lamina-code-download"
    )
    if not settings.credentials_path.exists():
        write_credentials(settings.credentials_path, admin)

    runtimes = Runtimes()
    functions = Functions(settings, store, artifacts, runtimes.names)
    aliases = Aliases(functions)
    layers = Layers(settings, store, artifacts)
    functions.layers = layers
    history = HistoryStore(settings.data_dir / "history.db")
    functions.history = layers.history = history
    layers.sweep()
    identity = build_identity(
        settings, store, functions, frozenset({account_root}), presign_key.access_key_id, admin.access_key_id
    )

    scratch = Scratch(settings.data_dir)
    driver = BwrapDriver(
        state_dir=scratch.root / "sandbox", cgroup_name=f"lamina-{scratch.instance}"
    )
    reclaimed = driver.reclaim()
    if reclaimed:
        log.info("reclaimed %d leftovers of a previous run", reclaimed)
    logs = LogStore(settings.data_dir / "logs.db")
    code = CodeCache(
        scratch.code,
        lambda key: layers.read_layer_key(key) if key.startswith("layer/") else functions.read_code_key(key),
        ArchiveLimits.from_settings(settings.limits),
    )
    pool = Pool(idle_timeout=settings.env_idle_seconds, max_lifetime=settings.env_max_lifetime_seconds)
    relayed = RelayedPeers()  # the API refuses platform routes to these (calls from functions)
    worker = Worker(
        region=settings.region, driver=driver, runtimes=runtimes, code=code, logs=logs, pool=pool,
        envs_dir=scratch.envs, standby_stock=settings.standby_per_runtime,
        layers_for=layers.for_function,
        credentials=identity.issuer, api_target=_relay_target(settings, relayed),
    )
    concurrency = Concurrency(settings.limits.account_concurrency, settings.limits.unreserved_concurrency_min)
    for name, value in functions.reservations().items():
        concurrency.set_reserved(name, value)

    def on_change(name: str) -> None:
        worker.retire(name)
        concurrency.set_reserved(name, functions.reservations().get(name))

    functions.on_change.append(on_change)
    metrics = LambdaMetrics(queue_depth=event_queue_depth(events_db_path(settings.data_dir)))
    otlp_url = endpoint_from_env(os.environ)
    otlp = OtlpExporter(otlp_url) if otlp_url else None
    tracer = TraceRecorder(capacity=1000, exporter=otlp.offer if otlp else None)
    invoke_service = InvokeService(
        functions, worker, concurrency, async_payload_limit=settings.limits.async_payload_max_bytes,
        metrics=metrics, tracer=tracer,
    )
    asynchronous = await open_async(settings, functions, invoke_service, identity.authorize_delivery)
    asynchronous.invoker.metrics = metrics

    skew = timedelta(seconds=settings.clock_skew_seconds)
    verifier = sigv4.Verifier(identity.access_keys, _now, skew=skew)
    downloads = Downloads(
        functions, layers,
        sigv4.SecretKey(presign_key.access_key_id, presign_key.secret_access_key, None, presign_key.principal_arn),
        region=settings.region, expires=settings.presign_seconds, skew=skew, clock=_now,
    )

    model = ServiceModel("lambda", "2015-03-31")
    handlers = {
        **FunctionHandlers(functions, downloads.code_url).handlers(),
        **AliasHandlers(aliases).handlers(),
        **AccountHandlers(functions, settings).handlers(),
        **InvokeHandlers(invoke_service, functions, concurrency).handlers(),
        **LayerHandlers(layers, downloads.layer_url).handlers(),
        **AsyncHandlers(asynchronous.configs, asynchronous.enqueue, payload_limit=INVOKE_ASYNC_LIMIT).handlers(),
        **PermissionHandlers(identity.permissions).handlers(),
    }
    limits = settings.limits
    lambda_service = LambdaService(
        model=model,
        handlers=handlers,
        body_limits={
            "CreateFunction": limits.control_body_max_bytes,
            "UpdateFunctionCode": limits.control_body_max_bytes,
            "PublishLayerVersion": limits.control_body_max_bytes,
            "Invoke": limits.sync_payload_max_bytes,
        },
    )
    platform_ref: list[Platform] = []
    app = App(verifier, lambda_service, downloads.download, ready=lambda: bool(platform_ref and platform_ref[0].ready),
              region=settings.region,
              status=lambda: {"standby": worker.standbys.status()},
              json_services={"logs": logs_service(
                  LogsHandlers(logs, region=settings.region, account_id=settings.account_id).handlers())},
              observability=Observability(metrics.exposition, history.page, frozenset({account_root}), tracer),
              query_services=identity.query_services, guard=identity.guard,
              sandbox_peers=relayed)
    platform = Platform(
        settings, keys, store, functions, app, admin, worker, logs, scratch, driver, asynchronous,
        history=history, metrics=metrics, otlp=otlp, identity=identity,
    )
    platform_ref.append(platform)
    return platform


def _relay_target(settings: Settings, peers: RelayedPeers) -> RelayTarget:
    """Where environments' relays (AWS_ENDPOINT_URL inside the sandbox) reach this server: over
    loopback, verifying the server's own certificate when it serves TLS."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "localhost") else settings.host
    if host == "::":
        host = "::1"
    if settings.tls_cert is None:
        return RelayTarget(host, settings.port, peers=peers)
    context = ssl.create_default_context(cafile=str(settings.tls_cert))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the certificate itself is the anchor
    context.check_hostname = False  # pinned to our own certificate; the name is the host's
    return RelayTarget(host, settings.port, context, peers=peers)


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising SIGTERM/SIGINT once it has shut down: Lamina still
    has to stop its sandboxes and wipe the decrypted code from its tmpfs after that."""

    def _clear_captured(self) -> None:
        self._captured_signals.clear()

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        await super().shutdown(sockets)
        self._clear_captured()


async def serve(settings: Settings) -> None:
    platform = await build(settings)
    config = uvicorn.Config(
        platform.app,
        host=settings.host,
        port=settings.port,
        loop="none",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=75,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        # Lamina is not behind a proxy it trusts: X-Forwarded-For/-Proto must not change the
        # client address or scheme (aws:SourceIp, aws:SecureTransport, relay detection).
        proxy_headers=False,
    )
    server = _Server(config)
    background = [
        asyncio.create_task(platform.logs.run_flusher()),
        asyncio.create_task(platform.worker.pool.run_reaper(interval=5.0)),
    ]
    if platform.otlp is not None:
        background.append(asyncio.create_task(platform.otlp.run()))
    platform.worker.start()
    platform.asynchronous.start()
    platform.ready = True
    try:
        await server.serve()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await platform.close()


def run(settings: Settings) -> None:
    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:  # uvloop is optional on platforms without it
        asyncio.run(serve(settings))
