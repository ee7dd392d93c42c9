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
    from lamina.iam.tls import ensure_server_certificate

    data_dir = Path(args.data_dir).resolve()
    cert, key = args.tls_cert, args.tls_key
    if bool(cert) != bool(key):
        print("lamina: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    wants_tls = bool(cert) or args.tls or not _is_loopback(args.host)
    if not _is_loopback(args.host) and args.insecure_http:
        wants_tls = bool(cert)
        print(f"lamina: WARNING: plain HTTP on non-loopback {args.host}: signatures protect integrity, "
              "not confidentiality", file=sys.stderr)
    ca = None
    if wants_tls and not cert:
        files = ensure_server_certificate(data_dir / "tls", args.host)
        cert, key, ca = files.cert, files.key, files.ca
    settings = settings_mod.from_env(
        data_dir,
        host=args.host,
        port=args.port,
        account_id=args.account_id,
        region=args.region,
        tls_cert=Path(cert).resolve() if cert else None,
        tls_key=Path(key).resolve() if key else None,
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    trust = f"; clients trust {ca}" if ca else ""
    print(f"lamina: serving on {settings.endpoint} (data dir {settings.data_dir}){trust}", file=sys.stderr, flush=True)
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
    srv.add_argument("--tls", action="store_true",
                     help="serve HTTPS with a certificate from the data dir's own CA (DIR/tls/ca.pem)")
    srv.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate chain (PEM)")
    srv.add_argument("--tls-key", default=None, help="the private key of --tls-cert (PEM)")
    srv.add_argument("--insecure-http", action="store_true",
                     help="allow plain HTTP on a non-loopback --host (refused otherwise: TLS is generated)")
    srv.set_defaults(func=_server)

    keys = sub.add_parser("keys", help="master key management")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="create a new master key and re-wrap every artifact's data key")
    rotate.add_argument("--data-dir", required=True)
    rotate.set_defaults(func=_keys_rotate)

    from lamina import cli_events, cli_history, cli_traces

    cli_events.add_parser(sub)
    cli_history.add_parser(sub)
    cli_traces.add_parser(sub)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
