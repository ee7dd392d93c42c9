"""Settings, loaded once at start and passed down explicitly (never read from globals)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """AWS Lambda's quotas, as Lamina enforces them."""

    zip_max_bytes: int = 50 * 1024 * 1024
    unzipped_max_bytes: int = 250 * 1024 * 1024
    zip_max_entries: int = 20_000
    zip_max_name_bytes: int = 1024
    zip_max_depth: int = 64
    # A request body of CreateFunction carries the zip base64-encoded inside JSON.
    control_body_max_bytes: int = 70 * 1024 * 1024
    env_vars_max_bytes: int = 4 * 1024
    sync_payload_max_bytes: int = 6_291_456
    async_payload_max_bytes: int = 1_048_576
    account_concurrency: int = 1000
    unreserved_concurrency_min: int = 100
    code_storage_bytes: int = 75 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 9000
    account_id: str = "000000000000"
    region: str = "us-east-1"
    limits: Limits = field(default_factory=Limits)
    # Presigned URLs that GetFunction returns for Code.Location stay valid this long.
    presign_seconds: int = 600
    # HTTPS when both are set (``lamina server --tls`` or a non-loopback --host generate them).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Environments idle this long are shut down; none lives longer than the lease (the seed's
    # workers hold an 8-hour lease).
    env_idle_seconds: float = 300.0
    env_max_lifetime_seconds: float = 8 * 3600.0
    # Sandboxes started ahead of demand per runtime (the Python runtime only, for now), so a
    # cold start skips sandbox and interpreter start. 0 turns standbys off.
    standby_per_runtime: int = 2
    # Asynchronous invocation: the delays before the 2nd and 3rd attempt after a function error
    # (AWS: about 1 and 2 minutes), and the throttle/platform-error backoff (1 s doubling to 5 min).
    async_retry_delays: tuple[float, ...] = (60.0, 120.0)
    async_throttle_base: float = 1.0
    async_throttle_cap: float = 300.0
    clock_skew_seconds: int = 300

    @property
    def db_path(self) -> Path:
        return self.data_dir / "lamina.db"

    @property
    def credentials_path(self) -> Path:
        return self.data_dir / "credentials"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"


def from_env(data_dir: Path, **overrides: object) -> Settings:
    """Settings from command-line values, with LAMINA_ACCOUNT_ID / LAMINA_REGION from the environment."""
    values: dict[str, object] = {
        "account_id": os.environ.get("LAMINA_ACCOUNT_ID", "000000000000"),
        "region": os.environ.get("LAMINA_REGION", "us-east-1"),
    }
    delays = os.environ.get("LAMINA_ASYNC_RETRY_DELAYS")  # e.g. "0.2,0.4" for fast tests
    if delays:
        values["async_retry_delays"] = tuple(float(d) for d in delays.split(","))
    for name in ("async_throttle_base", "async_throttle_cap"):
        raw = os.environ.get(f"LAMINA_{name.upper()}")
        if raw:
            values[name] = float(raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(data_dir=data_dir, **values)  # type: ignore[arg-type]
