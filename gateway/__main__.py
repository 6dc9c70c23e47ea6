"""``python -m gateway``: serve the API; ``token add --role viewer NAME``: a new API token;
``provision [--broker mosquitto|rabbitmq] [--out DIR]``: the broker's users and what they may do, and
their passwords, from the registry (Mosquitto's password file and ACL, or RabbitMQ definitions)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import platformdirs
import uvicorn

from gateway.api.main import create_app
from gateway.config import Settings
from gateway.credentials import Role, TokenStore
from gateway.exceptions import CredentialsError
from gateway.provision import SECRETS_FILE, SERVICE_USERS, provision
from gateway.rabbitmq import DEFAULT_QUEUE, DEFAULT_VHOST, apply, provision_rabbitmq
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


def _summary(users: tuple[str, ...], added: tuple[str, ...], removed: tuple[str, ...]) -> None:
    stations = len(users) - len(SERVICE_USERS)
    print(f"provision: {len(users)} MQTT users ({', '.join(SERVICE_USERS)}, {stations} stations): "  # noqa: T201
          f"{len(added)} new, {len(removed)} removed{': ' + ' '.join(removed) if removed else ''}", file=sys.stderr)


def provision_files(settings: Settings, out: Path, secrets: Path | None) -> None:
    done = provision(settings.load_registry(), out, secrets_file=secrets)
    _summary(done.users, done.added, done.removed)
    print(f"{done.passwd}\tpassword file: the broker's password_file, the gateway's STATION_PASSWORD_FILE\n"  # noqa: T201
          f"{done.acl}\tACL: the broker's acl_file\n"
          f"{done.secrets}\tthe passwords (mode 0600): STATION_PASSWORD of each agent, MQTT_URL of ingest and gateway")
    print("reload the broker to apply them: kill -HUP <mosquitto pid>", file=sys.stderr)  # noqa: T201


def provision_rabbitmq_files(settings: Settings, args: argparse.Namespace) -> None:
    done = provision_rabbitmq(settings.load_registry(), args.out, secrets_file=args.secrets or args.out / SECRETS_FILE,
                              vhost=args.vhost, queue=args.queue)
    _summary(done.users, done.added, done.removed)
    print(f"{done.definitions}\tRabbitMQ definitions: users, permissions, vhost {args.vhost!r}, queue {args.queue!r}\n"  # noqa: T201
          f"{done.secrets}\tthe passwords (mode 0600): STATION_PASSWORD of each agent, AMQP_URL of ingest, "
          "MQTT_URL of the gateway")
    if args.apply:
        deleted = apply(done.definitions, args.apply, rabbitmqctl=args.rabbitmqctl)
        print(f"provision: imported into {args.apply}; deleted {len(deleted)} users of stations no longer in the "  # noqa: T201
              f"registry{': ' + ' '.join(deleted) if deleted else ''}", file=sys.stderr)
    else:
        print(f"apply: rabbitmqctl import_definitions {done.definitions}, or load it at boot "  # noqa: T201
              "(definitions.local.path); --apply NODE does the first and deletes removed stations' users",
              file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the HTTP API (the default)")
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    add = token.add_parser("add", help="create a token, print it once, store its hash in GATEWAY_TOKENS_FILE")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("name")
    prov = sub.add_parser("provision", help="write the broker's password file and ACL, and the MQTT passwords, "
                                            "from the registry; re-running keeps existing passwords")
    prov.add_argument("--out", type=Path, default=platformdirs.user_config_path("yizhan") / "mqtt",
                      help="directory for passwd, acl and secrets.yaml (default: %(default)s)")
    prov.add_argument("--secrets", type=Path, help="the passwords file instead (default: OUT/secrets.yaml)")
    prov.add_argument("--broker", choices=["mosquitto", "rabbitmq"], default="mosquitto",
                      help="mosquitto: passwd and acl; rabbitmq: definitions.json (default: %(default)s)")
    prov.add_argument("--vhost", default=DEFAULT_VHOST, help="rabbitmq: the vhost (default: %(default)s)")
    prov.add_argument("--queue", default=DEFAULT_QUEUE, help="rabbitmq: ingest's quorum queue, INGEST_QUEUE "
                                                             "(default: %(default)s)")
    prov.add_argument("--apply", metavar="NODE", help="rabbitmq: import the definitions into NODE's cluster with "
                                                      "rabbitmqctl and delete the users of removed stations")
    prov.add_argument("--rabbitmqctl", default="rabbitmqctl", help="rabbitmq: the CLI (default: %(default)s)")
    args = parser.parse_args()
    settings = load_or_exit(Settings, "gateway")
    logs.setup(settings.log_format, settings.log_level)
    try:
        if args.command == "token":
            token_add(settings, args.name, Role(args.role))
        elif args.command == "provision" and args.broker == "rabbitmq":
            provision_rabbitmq_files(settings, args)
        elif args.command == "provision":
            provision_files(settings, args.out, args.secrets)
        else:
            serve(settings)
    except (RegistryError, CredentialsError) as exc:
        raise SystemExit(f"gateway: {exc}") from None


if __name__ == "__main__":
    main()
