"""The worker: turns a function version into warm environments and runs invocations in them.

It owns the environment pool, the code cache on the scratch tmpfs and the sandbox driver.
``run()`` leases an environment for exactly one invocation (a cold start when none is idle),
frames the invocation's log output (START / END / REPORT) into the function's log stream and
returns what happened; the invoke service above it turns that into the API's answer.

Each assigned environment gets temporary credentials of its function's execution role (from
the ``CredentialIssuer``), in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
as on AWS. One loop refreshes the credentials of every live environment; an environment's
credentials are revoked when it is destroyed, whatever the reason (the destroy hook given
to ``Environment.assign``). With a relay target, AWS_ENDPOINT_URL points the SDK at the
env's relay listener, which carries its connections to the Lamina API.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lamina.control.model import FunctionVersion, LayerVersion
from lamina.errors import SandboxError
from lamina.runtime import Invocation, InvocationResult
from lamina.sandbox.driver import SandboxDriver
from lamina.telemetry.logs import LogStore
from lamina.worker.code import CodeCache
from lamina.worker.credentials import REFRESH_INTERVAL, CredentialIssuer, IssuedCredentials, LiveCredentials
from lamina.worker.environment import Assignment, Environment, Failure, StandbyConfig
from lamina.worker.pool import EnvKey, Pool
from lamina.worker.relay import RELAY_ENDPOINT, RelayTarget
from lamina.worker.runtimes import LD_LIBRARY_PATH, PATH, RUNTIME_DIR, TASK_ROOT, Runtimes
from lamina.worker.standby import Standbys

INIT_TIMEOUT = 10.0
DEFAULT_TMP_MB = 512
LOG_TAIL_BYTES = 4096


@dataclass(frozen=True)
class RunResult:
    outcome: InvocationResult | Failure
    executed_version: str
    log_tail: str  # the invocation's log lines, START to REPORT
    cold: bool
    duration_ms: float
    init_ms: float | None = None  # the cold start's init (for traces), None when warm


def fingerprint(version: FunctionVersion) -> str:
    """Changes with the code or any configuration; not with state transitions."""
    return f"{version.code_key}|{version.last_modified}"


class Worker:
    def __init__(
        self,
        *,
        region: str,
        driver: SandboxDriver,
        runtimes: Runtimes,
        code: CodeCache,
        logs: LogStore,
        pool: Pool,
        envs_dir: Path,
        standby_stock: int = 1,
        layers_for: Callable[[tuple[str, ...]], tuple[LayerVersion, ...]] = lambda arns: (),
        credentials: CredentialIssuer | None = None,
        api_target: RelayTarget | None = None,
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        """``credentials`` issues each environment its role's credentials (None: random
        placeholders, which sign nothing); ``api_target`` is where env relays connect (None:
        no relay, no AWS_ENDPOINT_URL)."""
        self.region = region
        self.driver = driver
        self.runtimes = runtimes
        self.code = code
        self.logs = logs
        self.pool = pool
        self.envs_dir = envs_dir
        self.layers_for = layers_for  # layer version ARNs -> versions (deleted ones included)
        self.credentials = LiveCredentials(credentials, refresh_interval) if credentials is not None else None
        self.api_target = api_target
        self.standbys = Standbys(
            self._warm_standby, {runtime: standby_stock for runtime in runtimes.names[:1]}
        )

    def retire(self, function: str) -> None:
        """After an update or delete: no new invoke reaches the function's current envs."""
        self.pool.retire(function)

    def _environment_variables(
        self, v: FunctionVersion, stream: str, creds: IssuedCredentials | None = None
    ) -> dict[str, str]:
        launch = self.runtimes.launch(v.runtime)
        env = dict(v.environment)  # the function's own first: the reserved names below win
        env.update(dict(launch.env))
        if creds is None:  # no issuer: per-environment placeholders, never the admin's key
            creds = IssuedCredentials(
                "ASIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30),
                secrets.token_urlsafe(48), datetime.now(timezone.utc),
            )
        env.update(
            {
                "_HANDLER": v.handler,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_EXECUTION_ENV": self.runtimes.execution_env(v.runtime),
                "AWS_LAMBDA_FUNCTION_NAME": v.name,
                "AWS_LAMBDA_FUNCTION_VERSION": v.version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(v.memory_size),
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_LAMBDA_LOG_GROUP_NAME": v.log_group or f"/aws/lambda/{v.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": stream,
                "LAMBDA_TASK_ROOT": TASK_ROOT,
                "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
                "LANG": "en_US.UTF-8",
                "TZ": ":UTC",
                "PATH": PATH,
                "LD_LIBRARY_PATH": LD_LIBRARY_PATH,
                "AWS_ACCESS_KEY_ID": creds.access_key_id,
                "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
                "AWS_SESSION_TOKEN": creds.session_token,
            }
        )
        if self.api_target is not None:
            env["AWS_ENDPOINT_URL"] = RELAY_ENDPOINT  # nothing else is reachable from the env
        if v.log_format == "JSON":
            env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        if v.application_log_level:
            env["AWS_LAMBDA_LOG_LEVEL"] = v.application_log_level
        return env

    async def spawn_standby(self, runtime: str, tmp_mb: int = DEFAULT_TMP_MB) -> Environment:
        """A sandbox of ``runtime`` started and waiting for its function."""
        launch = self.runtimes.launch(runtime)
        config = StandbyConfig(runtime, launch.argv, self.runtimes.standby_env(runtime), launch.binds, tmp_mb)
        env = Environment(config, self.driver, self.envs_dir, self.api_target)
        try:
            await env.spawn()
        except BaseException:
            await env.destroy()
            raise
        return env

    async def _warm_standby(self, runtime: str) -> Environment:
        """A standby for the stock: only counted once its runtime is loaded and parked."""
        env = await self.spawn_standby(runtime)
        if not await env.warm(INIT_TIMEOUT):
            await env.destroy()
            raise SandboxError("standby", f"a {runtime} standby did not come up")
        return env

    async def _make(self, v: FunctionVersion) -> tuple[Environment, Failure | None]:
        """An environment assigned to ``v`` (a standby if one is ready) and its init's outcome."""
        self.runtimes.launch(v.runtime)  # unknown runtimes fail before anything starts
        env = self.standbys.take(v.runtime) if v.ephemeral_storage == DEFAULT_TMP_MB else None
        if env is None:
            env = await self.spawn_standby(v.runtime, v.ephemeral_storage)
        keys = (v.code_key, *(layer.code_key for layer in self.layers_for(v.layers)))
        trees: list[Path] = []
        try:
            for key in keys:
                trees.append(await self.code.acquire(key))
        except BaseException:
            for key in keys[: len(trees)]:
                self.code.release(key)
            await env.destroy()
            raise

        try:
            creds = self._issue(v)
        except BaseException:
            for key in keys:
                self.code.release(key)
            await env.destroy()
            raise

        def revoke() -> None:
            if creds is not None and self.credentials is not None:
                self.credentials.revoke(creds.access_key_id)  # logs failures, never raises

        def release() -> None:
            for key in keys:
                self.code.release(key)

        day = datetime.now(timezone.utc).strftime("%Y/%m/%d")
        stream = f"{day}/[{v.version}]{secrets.token_hex(16)}"
        assignment = Assignment(
            function=v.name,
            version=v.version,
            env=self._environment_variables(v, stream, creds),
            code_tree=trees[0],
            memory_mb=v.memory_size,
            log_stream=stream,
            layer_trees=tuple(trees[1:]),
        )
        try:
            failure = await env.assign(assignment, INIT_TIMEOUT, release=release, revoke=revoke)
        except BaseException:
            await env.destroy()  # gives the code tree back through ``release``, exactly once
            raise
        return env, failure

    def _issue(self, v: FunctionVersion) -> IssuedCredentials | None:
        """The role's credentials for one new environment (the session is the function's
        name, as on AWS); None without an issuer."""
        if self.credentials is None:
            return None
        return self.credentials.issue(v.role, session_name=v.name)

    async def run(self, v: FunctionVersion, inv: Invocation) -> RunResult:
        key = EnvKey(v.name, v.version, fingerprint(v))
        group = v.log_group or f"/aws/lambda/{v.name}"
        made: list[Failure] = []

        async def make() -> Environment:
            env, failure = await self._make(v)
            if failure is not None:
                made.append(failure)
            return env

        async with self.pool.lease(key, make) as (pooled, cold):
            env = pooled
            assert isinstance(env, Environment) and env.assignment is not None
            stream = env.assignment.log_stream
            start_ms = time.time() * 1000
            started = time.perf_counter()
            if made:
                outcome: InvocationResult | Failure = made[0]
                init_log = env.logs.take() if env.logs else ""
            else:
                init_log = env.logs.take() if env.logs and cold else ""
                outcome = await env.invoke(inv, v.timeout)
            duration_ms = (time.perf_counter() - started) * 1000
            output = env.logs.take() if env.logs else ""
            failure = outcome if isinstance(outcome, Failure) else None
            lines = [init_log, *_framed(v, inv.request_id, output, failure, duration_ms,
                                        env.stats_max_memory_mb(), env.init_duration_ms if cold else None)]
            text = "".join(lines)
            self.logs.append(group, stream, _events(text, int(start_ms)))
            tail = text[-LOG_TAIL_BYTES:] if len(text) > LOG_TAIL_BYTES else text
            return RunResult(outcome, v.version, tail, cold, duration_ms, env.init_duration_ms if cold else None)

    def start(self) -> None:
        """Starts keeping the standby stock and refreshing credentials (call once the event
        loop runs)."""
        self.standbys.start()
        if self.credentials is not None:
            self.credentials.start()

    async def close(self) -> None:
        await self.standbys.close()
        await self.pool.close()
        if self.credentials is not None:  # also revokes keys of cold starts cut short
            await self.credentials.close()
        self.code.clear()


def _iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _framed(
    v: FunctionVersion, request_id: str, output: str, failure: Failure | None, duration_ms: float,
    max_memory_mb: int, init_ms: float | None,
) -> list[str]:
    """The invocation's output between Lambda's platform lines: START/END/REPORT text lines, or
    with LogFormat JSON the platform.start/platform.report records, which a SystemLogLevel of
    WARN or above leaves out (they are INFO)."""
    billed = max(1, math.ceil(duration_ms))
    error = [f"{_iso_now()} {request_id} {failure.error_type}: {failure.message}\n"] if failure else []
    if v.log_format != "JSON":
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms\t"
            f"Memory Size: {v.memory_size} MB\tMax Memory Used: {max_memory_mb} MB"
        )
        if init_ms is not None:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        return [f"START RequestId: {request_id} Version: {v.version}\n", output, *error,
                f"END RequestId: {request_id}\n", report + "\t\n"]
    if (v.system_log_level or "INFO") not in ("DEBUG", "INFO"):
        return [output, *error]
    metrics: dict[str, float | int] = {"durationMs": round(duration_ms, 2), "billedDurationMs": billed,
                                       "memorySizeMB": v.memory_size, "maxMemoryUsedMB": max_memory_mb}
    if init_ms is not None:
        metrics["initDurationMs"] = round(init_ms, 2)
    start = {"requestId": request_id, "version": v.version}
    report_record = {"requestId": request_id, "metrics": metrics, "status": "error" if failure else "success"}
    return [
        json.dumps({"time": _iso_now(), "type": "platform.start", "record": start}) + "\n", output, *error,
        json.dumps({"time": _iso_now(), "type": "platform.report", "record": report_record}) + "\n",
    ]


def _events(text: str, ts: int) -> list[tuple[int, str]]:
    """One log event per line, as Lambda's log stream shows them."""
    return [(ts, line) for line in text.splitlines() if line]


def encode_tail(tail: str) -> str:
    data = tail.encode("utf-8", "replace")[-LOG_TAIL_BYTES:]
    return base64.b64encode(data).decode()

