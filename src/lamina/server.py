"""Assembles the platform from settings and runs it: one process, one event loop, one port.

First start creates the data dir (0700), the master key, the administrator's access key and
``DIR/credentials`` (AWS shared-credentials INI, 0600); later starts reuse them.
"""

from __future__ import annotations

import asyncio
import configparser
import io
import logging
import os
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, unquote

import uvicorn

from lamina.api import sigv4
from lamina.api.app import App, LambdaService
from lamina.api.lambda_aliases import AccountHandlers, AliasHandlers
from lamina.api.lambda_async import AsyncHandlers
from lamina.api.lambda_functions import FunctionHandlers
from lamina.api.lambda_invoke import InvokeHandlers
from lamina.api.lambda_layers import LAYER_PATH_PREFIX, LayerHandlers, layer_path_for
from lamina.api.lambda_layers import download as layer_download
from lamina.api.wire import ServiceModel
from lamina.control.aliases import Aliases
from lamina.control.archives import ArchiveLimits
from lamina.control.functions import Functions, aws_timestamp
from lamina.control.layers import Layers
from lamina.control.model import AccessKey
from lamina.errors import AccessDenied
from lamina.invoke.asynchronous import AsyncInvocations, open_async
from lamina.invoke.concurrency import Concurrency
from lamina.invoke.service import InvokeService
from lamina.sandbox.bwrap import BwrapDriver
from lamina.settings import Settings
from lamina.store.artifacts import LocalArtifactStore
from lamina.store.keys import KeyRing
from lamina.store.metadata import MetadataStore
from lamina.store.sqlite import SqliteMetadataStore
from lamina.telemetry.logs import LogStore
from lamina.worker.code import CodeCache
from lamina.worker.pool import Pool
from lamina.worker.runtimes import Runtimes
from lamina.worker.scratch import Scratch
from lamina.worker.worker import Worker

log = logging.getLogger(__name__)

ADMIN_KEY_SETTING = "admin_access_key_id"
PRESIGN_KEY_SETTING = "presign_access_key_id"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_access_key(prefix: str = "AKIA") -> tuple[str, str]:
    alphabet = string.ascii_uppercase + "234567"
    key_id = prefix + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    return key_id, secret


def _ensure_key(store: MetadataStore, setting: str, principal: str) -> AccessKey:
    with store.transaction() as tx:
        key_id = tx.get_setting(setting)
        key = tx.get_access_key(key_id) if key_id else None
        if key is None:
            key_id, secret = new_access_key()
            key = AccessKey(key_id, secret, principal, aws_timestamp(_now()))
            tx.put_access_key(key)
            tx.put_setting(setting, key_id)
        return key


def write_credentials(path: Path, key: AccessKey) -> None:
    """DIR/credentials in AWS shared-credentials format, mode 0600, written atomically."""
    parser = configparser.ConfigParser()
    parser["default"] = {
        "aws_access_key_id": key.access_key_id,
        "aws_secret_access_key": key.secret_access_key,
    }
    buffer = io.StringIO()
    parser.write(buffer)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AccessKeys:
    """SigV4's key lookup. Keys found are kept decrypted in memory until the store next
    changes: the invoke path verifies a signature on every request."""

    def __init__(self, store: MetadataStore, exclude: str) -> None:
        self.store = store
        self.exclude = exclude  # the code-download key signs presigned URLs only
        self._known: dict[str, sigv4.SecretKey] = {}
        self._generation = -1

    def __call__(self, access_key_id: str) -> sigv4.SecretKey | None:
        if access_key_id == self.exclude:
            return None
        if self._generation != self.store.generation:
            self._known.clear()
            self._generation = self.store.generation
        secret = self._known.get(access_key_id)
        if secret is None:
            with self.store.transaction() as tx:
                key = tx.get_access_key(access_key_id)
            if key is None:
                return None
            secret = sigv4.SecretKey(key.access_key_id, key.secret_access_key, key.session_token, key.principal_arn)
            self._known[access_key_id] = secret
        return secret


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

    async def close(self) -> None:
        await self.asynchronous.close()
        await self.functions.settle()
        await self.worker.close()
        self.driver.close()
        self.driver.hierarchy.remove_parents()  # every env is gone: the parents are empty
        self.logs.close()
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
    admin = _ensure_key(store, ADMIN_KEY_SETTING, account_root)
    presign_key = _ensure_key(store, PRESIGN_KEY_SETTING, f"arn:aws:iam::{settings.account_id}:role/lamina-code-download")
    if not settings.credentials_path.exists():
        write_credentials(settings.credentials_path, admin)

    runtimes = Runtimes()
    functions = Functions(settings, store, artifacts, runtimes.names)
    aliases = Aliases(functions)
    layers = Layers(settings, store, artifacts)
    functions.layers = layers
    layers.sweep()

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
    worker = Worker(
        region=settings.region, driver=driver, runtimes=runtimes, code=code, logs=logs, pool=pool,
        envs_dir=scratch.envs, standby_stock=settings.standby_per_runtime,
        layers_for=layers.for_function,
    )
    concurrency = Concurrency(settings.limits.account_concurrency, settings.limits.unreserved_concurrency_min)
    for name, value in functions.reservations().items():
        concurrency.set_reserved(name, value)

    def on_change(name: str) -> None:
        worker.retire(name)
        concurrency.set_reserved(name, functions.reservations().get(name))

    functions.on_change.append(on_change)
    invoke_service = InvokeService(
        functions, worker, concurrency, async_payload_limit=settings.limits.async_payload_max_bytes
    )
    asynchronous = await open_async(settings, functions, invoke_service)

    lookup = AccessKeys(store, exclude=presign_key.access_key_id)

    download_secret = sigv4.SecretKey(
        presign_key.access_key_id, presign_key.secret_access_key, None, presign_key.principal_arn
    )
    verifier = sigv4.Verifier(lookup, _now, skew=_skew(settings))
    download_verifier = sigv4.Verifier(
        lambda k: download_secret if k == download_secret.access_key_id else None, _now, skew=_skew(settings)
    )

    def presign(endpoint: str, name: str, version: str) -> str:
        path = code_path_for(name, version)
        return sigv4.presign_url(
            method="GET", endpoint=endpoint, path=path, query={}, key=download_secret,
            region=settings.region, service="lambda", expires=settings.presign_seconds, now=_now(),
        )

    def presign_layer(endpoint: str, name: str, version: int) -> str:
        return sigv4.presign_url(
            method="GET", endpoint=endpoint, path=layer_path_for(name, version), query={},
            key=download_secret, region=settings.region, service="lambda",
            expires=settings.presign_seconds, now=_now(),
        )

    async def code_download(request: sigv4.HttpRequest) -> bytes:
        download_verifier.verify(request)
        if request.raw_path.startswith(LAYER_PATH_PREFIX):
            return await layer_download(layers, request.raw_path)
        parts = request.raw_path.split("/")
        if len(parts) != 5:
            raise AccessDenied("Access Denied")
        name, version = unquote(parts[3]), unquote(parts[4])
        resolved = functions.resolve(name, version)
        return await asyncio.to_thread(functions.read_code, resolved.version)

    model = ServiceModel("lambda", "2015-03-31")
    handlers = {
        **FunctionHandlers(functions, presign).handlers(),
        **AliasHandlers(aliases).handlers(),
        **AccountHandlers(functions, settings).handlers(),
        **InvokeHandlers(invoke_service, functions, concurrency).handlers(),
        **LayerHandlers(layers, presign_layer).handlers(),
        **AsyncHandlers(
            asynchronous.configs, asynchronous.enqueue, payload_limit=settings.limits.async_payload_max_bytes
        ).handlers(),
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
    app = App(verifier, lambda_service, code_download, ready=lambda: bool(platform_ref and platform_ref[0].ready),
              region=settings.region,
              status=lambda: {"standby": worker.standbys.status()})
    platform = Platform(
        settings, keys, store, functions, app, admin, worker, logs, scratch, driver, asynchronous
    )
    platform_ref.append(platform)
    return platform


def code_path_for(name: str, version: str) -> str:
    return f"/_lamina/code/{quote(name, safe='')}/{quote(version, safe='')}"


def _skew(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.clock_skew_seconds)


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
    )
    server = uvicorn.Server(config)
    background = [
        asyncio.create_task(platform.logs.run_flusher()),
        asyncio.create_task(platform.worker.pool.run_reaper(interval=5.0)),
    ]
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
