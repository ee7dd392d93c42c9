"""The `lamina` command: `lamina server ...`, `lamina keys rotate ...`."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

from lamina import settings as settings_mod


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server(args: argparse.Namespace) -> int:
    from lamina import server

    if not _is_loopback(args.host):
        print(
            f"lamina: refusing to serve plain HTTP on non-loopback address {args.host}; "
            "TLS support comes with the IAM/TLS milestone. Use 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    settings = settings_mod.from_env(
        Path(args.data_dir).resolve(),
        host=args.host,
        port=args.port,
        account_id=args.account_id,
        region=args.region,
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    print(f"lamina: serving on {settings.endpoint} (data dir {settings.data_dir})", file=sys.stderr, flush=True)
    server.run(settings)
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from lamina.store.artifacts import LocalArtifactStore
    from lamina.store.keys import KeyRing

    data_dir = Path(args.data_dir).resolve()
    settings = settings_mod.from_env(data_dir)
    keys = KeyRing.load_or_create(settings.keys_dir)
    key_id = keys.rotate()
    count = LocalArtifactStore(settings.artifacts_dir, keys).rewrap_all()
    print(f"new master key {key_id}; re-wrapped {count} artifacts; older keys stay for decryption")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lamina", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    srv = sub.add_parser("server", help="run the platform (API, invoke service, workers)")
    srv.add_argument("--data-dir", required=True, help="state directory (created on first start)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=9000)
    srv.add_argument("--account-id", default=None, help="account id in ARNs (default 000000000000 or $LAMINA_ACCOUNT_ID)")
    srv.add_argument("--region", default=None, help="region in ARNs (default us-east-1 or $LAMINA_REGION)")
    srv.add_argument("--log-level", default="warning")
    srv.set_defaults(func=_server)

    keys = sub.add_parser("keys", help="master key management")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="create a new master key and re-wrap every artifact's data key")
    rotate.add_argument("--data-dir", required=True)
    rotate.set_defaults(func=_keys_rotate)

    from lamina import cli_events

    cli_events.add_parser(sub)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
