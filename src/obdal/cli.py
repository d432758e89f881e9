"""The ``obdal`` command: run the stack, and administer apps, keys and operators over the admin API."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from obdal.archive_cli import add_archive_commands
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


def _data_dir() -> Path:
    return Path(os.environ.get("OBDAL_DATA_DIR", ".obdal"))


def _backup(args: argparse.Namespace) -> None:
    from obdal.backup import backup

    with _backup_errors():
        manifest = backup(data_dir=_data_dir(), dest=Path(args.dir))
    _print({"backup": args.dir, "created_at": manifest["created_at"], **manifest["contents"]})


def _restore(args: argparse.Namespace) -> None:
    from obdal.backup import restore

    with _backup_errors():
        restored = restore(source=Path(args.dir), data_dir=_data_dir())
    _print({"restored_into": str(_data_dir()), **restored})


@contextlib.contextmanager
def _backup_errors() -> Iterator[None]:
    """A refusal (bad directory, corrupt backup) exits 2, a server that fails exits 1: clearly."""
    from obdal.backup import BackupError
    from obdal_common.errors import ObdalError

    try:
        yield
    except BackupError as exc:
        print(f"obdal: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ObdalError as exc:
        print(f"obdal: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None


def _status(args: argparse.Namespace) -> None:
    # With the operator token the gateway adds the details (paths, models, errors) to up/down.
    try:
        admin = bool(_admin_token(args))
    except SystemExit:
        admin = False
    _print(_call(args, "GET", "/v1/status", admin=admin))


def _apps_create(args: argparse.Namespace) -> None:
    _print(_call(args, "POST", "/v1/admin/apps", {"name": args.name}))


def _apps_ls(args: argparse.Namespace) -> None:
    _print(_call(args, "GET", "/v1/admin/apps"))


def _apps_chat(args: argparse.Namespace) -> None:
    path = f"/v1/admin/apps/{args.app_id}/chat"
    changes = {
        "model": args.model,
        "system_prompt": args.system_prompt,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
    }
    if args.price:
        changes["input_cost_per_mtok"], changes["output_cost_per_mtok"] = args.price
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes and not args.reset:
        _print(_call(args, "GET", path))
        return
    # PUT replaces the settings: start from the current ones unless resetting.
    current = {} if args.reset else _call(args, "GET", path)
    _print(_call(args, "PUT", path, {**current, **changes}))


def _keys_create(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"name": args.name, "kind": args.kind, "allowed_origins": args.origin or []}
    if args.scope:
        body["scopes"] = args.scope
    for field in ("expires_at", "rate_limit_rpm", "token_budget"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if args.proof_of_work:
        body["proof_of_work"] = True
    _print(_call(args, "POST", f"/v1/admin/apps/{args.app_id}/keys", body))


def _keys_ls(args: argparse.Namespace) -> None:
    _print(_call(args, "GET", f"/v1/admin/apps/{args.app_id}/keys"))


def _keys_revoke(args: argparse.Namespace) -> None:
    _print(_call(args, "DELETE", f"/v1/admin/keys/{args.key_id}"))


def _keys_show(args: argparse.Namespace) -> None:
    _print(_call(args, "GET", f"/v1/admin/keys/{args.key_id}"))


def _keys_update(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {}
    if args.name:
        body["name"] = args.name
    if args.scope:
        body["scopes"] = args.scope
    if args.origin is not None or args.no_origins:
        body["allowed_origins"] = [] if args.no_origins else args.origin
    for field in ("expires_at", "rate_limit_rpm", "token_budget"):
        value = getattr(args, field)
        if value is not None:
            body[field] = None if value == "none" else (value if field == "expires_at" else int(value))
    if args.proof_of_work is not None:
        body["proof_of_work"] = args.proof_of_work == "on"
    _print(_call(args, "PATCH", f"/v1/admin/keys/{args.key_id}", body))


def _keys_rotate(args: argparse.Namespace) -> None:
    _print(_call(args, "POST", f"/v1/admin/keys/{args.key_id}/rotate", {"grace_period_s": args.grace}))


def _audit(args: argparse.Namespace) -> None:
    params = {k: v for k, v in (("app_id", args.app_id), ("action", args.action)) if v}
    query = "&".join(f"{k}={v}" for k, v in {**params, "limit": str(args.limit)}.items())
    _print(_call(args, "GET", f"/v1/admin/audit?{query}"))


def _demo(args: argparse.Namespace) -> None:
    """An app with a sample help center and a publishable key for this server's /demo page."""
    from importlib import resources
    from urllib.parse import urlsplit

    origin = "{0.scheme}://{0.netloc}".format(urlsplit(args.url))
    app_id = _call(args, "POST", "/v1/admin/apps", {"name": "Obdal demo"})["app_id"]
    uploader = _call(
        args,
        "POST",
        f"/v1/admin/apps/{app_id}/keys",
        {"name": "demo upload", "scopes": ["files:write", "files:read"]},
    )
    headers = {"Authorization": f"Bearer {uploader['key']}"}
    sample = resources.files("obdal").joinpath("demo.md").read_bytes()
    try:
        # The page is useful only once the sample is searchable: the upload waits for that.
        upload = httpx.post(
            f"{args.url}/v1/files",
            headers=headers,
            params={"wait": "true"},
            files={"file": ("help-center.md", sample)},
            timeout=90,
        )
        upload.raise_for_status()
    finally:
        _call(args, "DELETE", f"/v1/admin/keys/{uploader['key_id']}")
    widget_key = _call(
        args,
        "POST",
        f"/v1/admin/apps/{app_id}/keys",
        {"name": "demo widget", "kind": "publishable", "allowed_origins": [origin]},
    )["key"]
    print(f"Open {args.url.rstrip('/')}/demo?key={widget_key}")


def _operators_add(args: argparse.Namespace) -> None:
    # The password never goes on the command line (shell history, `ps`): prompted, or read from stdin.
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    roles = {app_id: args.role for app_id in args.app or []}
    if args.every_app:
        roles["*"] = args.every_app
    if not roles:
        raise SystemExit("obdal: give a role: --app APP_ID (with --role) or --every-app ROLE")
    body = {"email": args.email, "name": args.name or "", "password": password, "roles": roles}
    _print(_call(args, "POST", "/v1/admin/operators", body))


def _operators_ls(args: argparse.Namespace) -> None:
    _print(_call(args, "GET", "/v1/admin/operators"))


def _operators_rm(args: argparse.Namespace) -> None:
    _print(_call(args, "DELETE", f"/v1/admin/operators/{args.operator_id}"))


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
    commands.add_parser("demo", help="a demo app and the URL of its widget page").set_defaults(func=_demo)
    backup = commands.add_parser("backup", help="back up the data dir's stack into DIR, also while it runs")
    backup.add_argument("dir", help="a new or empty directory")
    backup.set_defaults(func=_backup)
    restore = commands.add_parser("restore", help="restore the backup in DIR into an empty data dir")
    restore.add_argument("dir", help="a directory `obdal backup` wrote")
    restore.set_defaults(func=_restore)

    apps = commands.add_parser("apps", help="manage apps").add_subparsers(dest="action", required=True)
    create_app = apps.add_parser("create", help="create an app")
    create_app.add_argument("name")
    create_app.set_defaults(func=_apps_create)
    apps.add_parser("ls", help="list apps").set_defaults(func=_apps_ls)
    add_archive_commands(apps, admin_token=_admin_token)
    chat = apps.add_parser("chat", help="show or change an app's model, prompt, temperature, limits, price")
    chat.add_argument("app_id")
    chat.add_argument("--model", help="litellm model id, e.g. openai/gpt-4o-mini")
    chat.add_argument("--system-prompt", help="the assistant's persona (the grounding rules always follow)")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument(
        "--price", type=float, nargs=2, metavar=("INPUT", "OUTPUT"), help="USD per million tokens"
    )
    chat.add_argument(
        "--reset", action="store_true", help="back to the worker's defaults, then apply options"
    )
    chat.set_defaults(func=_apps_chat)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create_key = keys.add_parser("create", help="create a key (its secret is printed once)")
    create_key.add_argument("app_id")
    create_key.add_argument("--name", required=True)
    create_key.add_argument("--kind", choices=["secret", "publishable"], default="secret")
    create_key.add_argument("--scope", action="append", help="repeatable; default depends on kind")
    create_key.add_argument("--origin", action="append", help="allowed web origin, repeatable")
    create_key.add_argument("--expires-at", help="ISO 8601 time with timezone")
    create_key.add_argument("--rate-limit-rpm", type=int, help="requests per minute (default: server's)")
    create_key.add_argument("--token-budget", type=int, help="tokens per UTC day")
    create_key.add_argument(
        "--proof-of-work", action="store_true", help="publishable: each question needs a solved challenge"
    )
    create_key.set_defaults(func=_keys_create)
    list_keys = keys.add_parser("ls", help="list an app's keys")
    list_keys.add_argument("app_id")
    list_keys.set_defaults(func=_keys_ls)
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_keys_revoke)
    show = keys.add_parser("show", help="one key")
    show.add_argument("key_id")
    show.set_defaults(func=_keys_show)
    update = keys.add_parser("update", help="change scopes, origins, expiry, limits ('none' clears)")
    update.add_argument("key_id")
    update.add_argument("--name")
    update.add_argument("--scope", action="append", help="repeatable; replaces the scopes")
    update.add_argument("--origin", action="append", help="repeatable; replaces the allowed origins")
    update.add_argument("--no-origins", action="store_true", help="clear the allowed origins")
    update.add_argument("--expires-at")
    update.add_argument("--rate-limit-rpm")
    update.add_argument("--token-budget")
    update.add_argument("--proof-of-work", choices=["on", "off"], help="publishable keys")
    update.set_defaults(func=_keys_update)
    rotate = keys.add_parser("rotate", help="new secret; the old one works for --grace seconds")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", type=int, default=3600)
    rotate.set_defaults(func=_keys_rotate)

    operators = commands.add_parser("operators", help="people who sign in to the console").add_subparsers(
        dest="action", required=True
    )
    add_operator = operators.add_parser("add", help="add an operator (the password is prompted)")
    add_operator.add_argument("email")
    add_operator.add_argument("--name")
    add_operator.add_argument("--app", action="append", help="an app the --role is on, repeatable")
    add_operator.add_argument("--role", choices=["viewer", "editor", "owner"], default="viewer")
    add_operator.add_argument(
        "--every-app",
        choices=["viewer", "editor", "owner"],
        help="a role on every app (owner: may create apps)",
    )
    add_operator.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_operator.set_defaults(func=_operators_add)
    operators.add_parser("ls", help="list operators").set_defaults(func=_operators_ls)
    remove_operator = operators.add_parser("rm", help="remove an operator (ends their sessions)")
    remove_operator.add_argument("operator_id")
    remove_operator.set_defaults(func=_operators_rm)

    audit = commands.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--app-id")
    audit.add_argument("--action")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(func=_audit)

    add_file_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    args = _parser().parse_args(argv)
    args.func(args)
