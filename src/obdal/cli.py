"""The ``obdal`` command: run the stack, and administer apps and keys over the admin API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from obdal.files_cli import add_file_commands

__all__ = ["main"]


def _admin_token(args: argparse.Namespace) -> str:
    if args.admin_token:
        return str(args.admin_token)
    path = Path(os.environ.get("OBDAL_DATA_DIR", ".obdal")) / "admin_token"
    if path.exists():
        return path.read_text().strip()
    raise SystemExit("obdal: no admin token: pass --admin-token or set OBDAL_ADMIN_TOKEN")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None, *, admin: bool = True) -> Any:
    headers = {"Authorization": f"Bearer {_admin_token(args)}"} if admin else {}
    try:
        response = httpx.request(
            method, f"{args.url.rstrip('/')}{path}", json=body, headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        raise SystemExit(f"obdal: cannot reach {args.url}: {exc}") from None
    data = response.json() if response.content else {}
    if response.status_code >= 400 and not (path == "/v1/status" and response.status_code == 503):
        error = data.get("error", {}) if isinstance(data, dict) else {}
        raise SystemExit(
            f"obdal: {response.status_code} {error.get('code', '')}: {error.get('message', data)}"
        )
    return data


def _print(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _up(_: argparse.Namespace) -> None:
    from obdal.stack import run_stack

    run_stack()


def _status(args: argparse.Namespace) -> None:
    _print(_call(args, "GET", "/v1/status", admin=False))


def _apps_create(args: argparse.Namespace) -> None:
    _print(_call(args, "POST", "/v1/admin/apps", {"name": args.name}))


def _apps_ls(args: argparse.Namespace) -> None:
    _print(_call(args, "GET", "/v1/admin/apps"))


def _keys_create(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"name": args.name, "kind": args.kind, "allowed_origins": args.origin or []}
    if args.scope:
        body["scopes"] = args.scope
    if args.expires_at:
        body["expires_at"] = args.expires_at
    _print(_call(args, "POST", f"/v1/admin/apps/{args.app_id}/keys", body))


def _keys_ls(args: argparse.Namespace) -> None:
    _print(_call(args, "GET", f"/v1/admin/apps/{args.app_id}/keys"))


def _keys_revoke(args: argparse.Namespace) -> None:
    _print(_call(args, "DELETE", f"/v1/admin/keys/{args.key_id}"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obdal", description="Obdal: chat with your documents.")
    parser.add_argument(
        "--url", default=os.environ.get("OBDAL_URL", "http://127.0.0.1:8080"), help="gateway URL"
    )
    parser.add_argument(
        "--admin-token", default=os.environ.get("OBDAL_ADMIN_TOKEN"), help="operator token for admin calls"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("up", help="start the whole stack on embedded defaults").set_defaults(func=_up)
    commands.add_parser("status", help="readiness of every dependency").set_defaults(func=_status)

    apps = commands.add_parser("apps", help="manage apps").add_subparsers(dest="action", required=True)
    create_app = apps.add_parser("create", help="create an app")
    create_app.add_argument("name")
    create_app.set_defaults(func=_apps_create)
    apps.add_parser("ls", help="list apps").set_defaults(func=_apps_ls)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create_key = keys.add_parser("create", help="create a key (its secret is printed once)")
    create_key.add_argument("app_id")
    create_key.add_argument("--name", required=True)
    create_key.add_argument("--kind", choices=["secret", "publishable"], default="secret")
    create_key.add_argument("--scope", action="append", help="repeatable; default depends on kind")
    create_key.add_argument("--origin", action="append", help="allowed web origin, repeatable")
    create_key.add_argument("--expires-at", help="ISO 8601 time with timezone")
    create_key.set_defaults(func=_keys_create)
    list_keys = keys.add_parser("ls", help="list an app's keys")
    list_keys.add_argument("app_id")
    list_keys.set_defaults(func=_keys_ls)
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_keys_revoke)

    add_file_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    args = _parser().parse_args(argv)
    args.func(args)
