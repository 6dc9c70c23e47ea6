"""``python -m gateway``: serve the API; ``python -m gateway token add --role viewer NAME``: a new API token."""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn

from gateway.api.main import create_app
from gateway.config import Settings
from gateway.credentials import Role, TokenStore
from gateway.exceptions import CredentialsError
from telemetry import logs
from telemetry.registry import RegistryError
from telemetry.settings import load_or_exit, parse_addr


def serve(settings: Settings) -> None:
    host, port = parse_addr(settings.gateway_addr)
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    asyncio.run(uvicorn.Server(config).serve())


def token_add(settings: Settings, name: str, role: Role) -> None:
    token = TokenStore(settings.gateway_tokens_file).add(name, role)
    print(f"token {name!r} ({role.value}), shown this once; its hash is in {settings.gateway_tokens_file}:",  # noqa: T201
          file=sys.stderr)
    print(token)  # noqa: T201 - the command's output


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the HTTP API (the default)")
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    add = token.add_parser("add", help="create a token, print it once, store its hash in GATEWAY_TOKENS_FILE")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("name")
    args = parser.parse_args()
    settings = load_or_exit(Settings, "gateway")
    logs.setup(settings.log_format, settings.log_level)
    try:
        if args.command == "token":
            token_add(settings, args.name, Role(args.role))
        else:
            serve(settings)
    except (RegistryError, CredentialsError) as exc:
        raise SystemExit(f"gateway: {exc}") from None


if __name__ == "__main__":
    main()
