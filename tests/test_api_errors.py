"""Failure paths of the public API: every client error is a clear JSON error with the right status."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.api import Api
from tests.conftest import BIN, MAX_MESSAGE_CHARS, MAX_UPLOAD_BYTES, Stack, clean_env


@pytest.fixture(scope="module")
def key(api: Api) -> str:
    return api.new_tenant("errors")[1]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"]
    assert error["message"]
    return error


def test_missing_key(api: Api) -> None:
    assert error_of(api.http.post("/v1/chat", json={"message": "hi"}), 401)["code"] == "missing_api_key"


@pytest.mark.parametrize(
    "presented",
    ["obd_sk_x", "obd_sk_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", "Bearer", "' OR 1=1 --"],
)
def test_unknown_or_malformed_key(api: Api, presented: str) -> None:
    response = api.chat(presented, "hi")
    assert error_of(response, 401)["code"] == "invalid_api_key"
    assert presented not in response.text


def test_key_from_body_and_query(api: Api, key: str) -> None:
    assert api.http.post("/v1/chat", json={"message": "hello", "api_key": key}).status_code == 200
    assert api.http.get("/v1/usage", params={"api_key": key}).status_code == 200
    # Only GET takes a key from the URL: nothing that changes data can be replayed from a log line.
    response = api.http.post("/v1/chat", params={"api_key": key}, json={"message": "hello"})
    assert error_of(response, 401)["code"] == "missing_api_key"
    response = api.http.delete("/v1/sessions/sess_nothing", params={"api_key": key})
    assert error_of(response, 401)["code"] == "missing_api_key"


def test_usage_of_any_long_range(api: Api, key: str) -> None:
    for params in ({"start_date": "2020-01-01", "end_date": "2026-01-01"}, {"start_date": "0001-01-01"}):
        body = api.usage(key, **params, group_by="day")
        assert body["start_date"] == params["start_date"]
        assert isinstance(body["total_requests"], int)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{bad json", "bad_request"),
        (b'{"message": 5}', "invalid_request"),
        (b'{"message": "hi", "surprise": 1}', "invalid_request"),
        (b'{"message": "hi", "session_id": "../../etc"}', "invalid_request"),
        (b'{"message": "hi", "stream": "yes"}', "invalid_request"),
        (b"[]", "invalid_request"),
        (b'{"message": "   "}', "empty_message"),
    ],
)
def test_bad_chat_bodies_are_400(api: Api, key: str, body: bytes, code: str) -> None:
    response = api.http.post(
        "/v1/chat", content=body, headers={**api.auth(key), "content-type": "application/json"}
    )
    assert error_of(response, 400)["code"] == code


def test_message_too_long_is_413(api: Api, key: str) -> None:
    assert error_of(api.chat(key, "x" * (MAX_MESSAGE_CHARS + 1)), 413)["code"] == "message_too_long"


def test_unsupported_file_is_415(api: Api, key: str) -> None:
    assert (
        error_of(api.upload(key, "photo.png", b"\x89PNG\r\n\x1a\n\x00"), 415)["code"]
        == "unsupported_file_type"
    )
    assert (
        error_of(api.upload(key, "photo.txt", b"\x89PNG\x00\x00\x00"), 415)["code"] == "unsupported_file_type"
    )
    assert (
        error_of(api.upload(key, "setup.pdf", b"\x7fELF\x02\x01\x01\x00"), 415)["code"]
        == "unsupported_file_type"
    )


def test_oversized_file_is_413(api: Api, key: str) -> None:
    response = api.upload(key, "big.txt", b"a" * (MAX_UPLOAD_BYTES + 1))
    error_of(response, 413)


def test_upload_without_file_field(api: Api, key: str) -> None:
    response = api.http.post("/v1/files", headers=api.auth(key), files={"document": ("a.txt", b"hi")})
    assert error_of(response, 400)["code"] == "missing_file"


def test_filename_is_sanitised(api: Api, key: str) -> None:
    response = api.upload(key, "../../etc/passwd.txt", b"root:x:0:0")
    assert response.status_code == 202
    assert response.json()["filename"] == "passwd.txt"


def test_unknown_file_is_404(api: Api, key: str) -> None:
    for file_id in ("file_doesnotexist", "nonsense", "file_a.b", "%24gt"):
        assert (
            error_of(api.http.get(f"/v1/files/{file_id}", headers=api.auth(key)), 404)["code"]
            == "file_not_found"
        )


def test_unknown_route_and_method(api: Api) -> None:
    error_of(api.http.get("/v1/nothing"), 404)
    error_of(api.http.put("/v1/chat"), 405)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"start_date": "2026-13-01"}, "invalid_date"),
        ({"end_date": "yesterday"}, "invalid_date"),
        ({"start_date": "2026-05-02", "end_date": "2026-05-01"}, "invalid_date_range"),
        ({"end_date": "9999-12-31"}, "invalid_date"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "367"}, "invalid_limit"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"group_by": "week"}, "invalid_group_by"),
        ({"key_id": '{"$gt": ""}'}, "invalid_key_id"),
    ],
)
def test_bad_usage_queries_are_400(api: Api, key: str, params: dict[str, str], code: str) -> None:
    assert error_of(api.http.get("/v1/usage", headers=api.auth(key), params=params), 400)["code"] == code


def test_admin_needs_the_operator_token(api: Api, key: str) -> None:
    assert error_of(api.http.get("/v1/admin/apps"), 401)["code"] == "invalid_admin_token"
    assert (
        error_of(api.http.get("/v1/admin/apps", headers=api.auth(key)), 401)["code"] == "invalid_admin_token"
    )
    # The guard runs before the body is read: garbage gets 401, not 400.
    error_of(api.http.post("/v1/admin/apps", content=b"{", headers={"content-type": "application/json"}), 401)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "k", "scopes": ["chat", "root"]}, "invalid_scope"),
        ({"name": "k", "allowed_origins": ["https://example.com/path"]}, "invalid_origin"),
        ({"name": "k", "allowed_origins": ["ftp://example.com"]}, "invalid_origin"),
        ({"name": "k", "allowed_origins": ["https://*.com"]}, "invalid_origin"),
        ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "invalid_expiry"),
        ({"name": "k", "kind": "superuser"}, "invalid_request"),
        ({"name": ""}, "invalid_request"),
    ],
)
def test_bad_key_requests_are_400(api: Api, body: dict[str, Any], code: str) -> None:
    app_id = api.create_app("keys")
    assert error_of(api.admin.post(f"/v1/admin/apps/{app_id}/keys", json=body), 400)["code"] == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"temperature": 2.5}, "invalid_request"),
        ({"max_tokens": 0}, "invalid_request"),
        ({"model": "openai/gpt 4; rm -rf"}, "invalid_request"),
        ({"system_prompt": ""}, "invalid_request"),
        ({"input_cost_per_mtok": 1.0}, "invalid_price"),
        ({"input_cost_per_mtok": -1.0, "output_cost_per_mtok": 1.0}, "invalid_request"),
        ({"top_p": 0.5}, "invalid_request"),
    ],
)
def test_bad_app_chat_settings_are_400(api: Api, body: dict[str, Any], code: str) -> None:
    app_id = api.create_app("settings")
    assert error_of(api.admin.put(f"/v1/admin/apps/{app_id}/chat", json=body), 400)["code"] == code
    assert api.admin.get(f"/v1/admin/apps/{app_id}/chat").json()["model"] is None  # nothing was stored


def test_chat_settings_of_unknown_app_404(api: Api) -> None:
    assert error_of(api.admin.put("/v1/admin/apps/app_missing000000/chat", json={}), 404)["code"] == (
        "app_not_found"
    )
    error_of(api.admin.get("/v1/admin/apps/app_missing000000/chat"), 404)


def test_cli_changes_app_chat_settings_keeping_the_others(api: Api, stack: Stack) -> None:
    app_id = api.create_app("cli settings")

    def obdal(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(BIN / "obdal"), "apps", "chat", app_id, *args],
            env=clean_env(OBDAL_URL=stack.url, OBDAL_ADMIN_TOKEN=stack.admin_token),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    assert obdal("--temperature", "0.5", "--price", "1", "3")["temperature"] == 0.5
    both = obdal("--max-tokens", "100")
    assert (both["temperature"], both["max_tokens"], both["output_cost_per_mtok"]) == (0.5, 100, 3.0)
    assert obdal() == both
    assert obdal("--reset")["temperature"] is None


def test_keys_of_unknown_app_404(api: Api) -> None:
    error_of(api.admin.post("/v1/admin/apps/app_missing000000/keys", json={"name": "k"}), 404)


def test_key_secret_is_shown_once_and_never_listed(api: Api) -> None:
    app_id = api.create_app("listing")
    created = api.create_key(app_id, name="once")
    listed = api.admin.get(f"/v1/admin/apps/{app_id}/keys").json()["keys"]
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    assert created["key"] not in str(listed)
    assert "secret_hash" not in listed[0]


def test_revoked_key_is_refused_at_once(api: Api) -> None:
    app_id = api.create_app("revoke")
    created = api.create_key(app_id)
    assert api.chat(created["key"], "hello").status_code == 200
    assert api.admin.delete(f"/v1/admin/keys/{created['key_id']}").status_code == 200
    assert error_of(api.chat(created["key"], "hello"), 401)["code"] == "key_revoked"


def test_expired_key_is_refused(api: Api) -> None:
    app_id = api.create_app("expiry")
    # Whole seconds: the expiry is 2-3 s away, room for one answer on a loaded machine.
    expires = int(time.time()) + 3
    created = api.create_key(app_id, expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)))
    assert api.chat(created["key"], "hello").status_code == 200
    time.sleep(max(0.0, expires - time.time()) + 0.5)
    assert error_of(api.chat(created["key"], "hello"), 401)["code"] == "key_expired"


def test_scopes_are_enforced(api: Api) -> None:
    app_id = api.create_app("scopes")
    chat_only = api.create_key(app_id, scopes=["chat"])["key"]
    assert (
        error_of(api.http.get("/v1/usage", headers=api.auth(chat_only)), 403)["code"] == "insufficient_scope"
    )
    assert error_of(api.upload(chat_only, "a.txt", b"hi"), 403)["code"] == "insufficient_scope"
    assert (
        error_of(api.http.get("/v1/files", headers=api.auth(chat_only)), 403)["code"] == "insufficient_scope"
    )
    usage_only = api.create_key(app_id, scopes=["usage:read"])["key"]
    assert error_of(api.chat(usage_only, "hi"), 403)["code"] == "insufficient_scope"


def test_origins_are_enforced(api: Api) -> None:
    app_id = api.create_app("origins")
    secret = api.create_key(app_id, allowed_origins=["https://shop.example.com"])["key"]
    ok = {"Origin": "https://shop.example.com"}
    bad = {"Origin": "https://shop.example.com.evil.net"}
    send = api.http.post
    assert send("/v1/chat", headers={**api.auth(secret), **ok}, json={"message": "hi"}).status_code == 200
    refused = send("/v1/chat", headers={**api.auth(secret), **bad}, json={"message": "hi"})
    assert error_of(refused, 403)["code"] == "origin_not_allowed"
    # Server-to-server (no Origin header) is what secret keys are for.
    assert api.chat(secret, "hi").status_code == 200

    publishable = api.create_key(app_id, kind="publishable", allowed_origins=["https://*.example.com"])["key"]
    assert publishable.startswith("obd_pk_")
    sub = {"Origin": "https://help.example.com"}
    assert (
        send("/v1/chat", headers={**api.auth(publishable), **sub}, json={"message": "hi"}).status_code == 200
    )
    assert error_of(api.chat(publishable, "hi"), 403)["code"] == "origin_required"
    apex = {"Origin": "https://example.com"}
    error_of(send("/v1/chat", headers={**api.auth(publishable), **apex}, json={"message": "hi"}), 403)

    no_origins = api.create_key(app_id, kind="publishable")["key"]
    refused = send("/v1/chat", headers={**api.auth(no_origins), **sub}, json={"message": "hi"})
    assert error_of(refused, 403)["code"] == "origin_not_allowed"


def test_tenants_are_isolated(api: Api) -> None:
    _, key_a = api.new_tenant("tenant-a")
    _, key_b = api.new_tenant("tenant-b")
    file_a = api.index(key_a, "secret-plan.md", "Project Quokkaflight launches on the ninth of March.")

    # B cannot see, read or delete A's file.
    assert api.http.get("/v1/files", headers=api.auth(key_b)).json()["files"] == []
    error_of(api.http.get(f"/v1/files/{file_a}", headers=api.auth(key_b)), 404)
    error_of(api.http.delete(f"/v1/files/{file_a}", headers=api.auth(key_b)), 404)
    # B's answers never draw on A's documents.
    answer = api.chat(key_b, "When does Project Quokkaflight launch?").json()
    assert "Quokkaflight" not in answer["content"]
    assert answer["sources"] == []
    # A still has it.
    assert "ninth of March" in api.chat(key_a, "When does Project Quokkaflight launch?").json()["content"]
    # B's usage does not include A's (each is counted apart, so wait for both).
    api.wait_usage(key_a, 1)
    assert api.wait_usage(key_b, 1)["total_requests"] == 1


def test_deleted_file_is_never_cited_again(api: Api) -> None:
    _, key = api.new_tenant("deletion")
    file_id = api.index(key, "promo.md", "The Glimmerwick discount code is SPRING-7741.")
    before = api.chat(key, "What is the Glimmerwick discount code?").json()
    assert "SPRING-7741" in before["content"]

    response = api.http.delete(f"/v1/files/{file_id}", headers=api.auth(key))
    assert response.status_code == 200, response.text
    assert response.json()["vectors_deleted"] >= 1

    after = api.chat(key, "What is the Glimmerwick discount code?").json()
    assert "SPRING-7741" not in after["content"]
    assert file_id not in str(after["sources"])
    error_of(api.http.get(f"/v1/files/{file_id}", headers=api.auth(key)), 404)


def test_unreadable_text_file_ends_failed_with_a_reason(api: Api, key: str) -> None:
    # Valid UTF-8 where the upload check samples, invalid further on: only the parser can tell.
    response = api.upload(key, "notes.txt", b"plain words " * 6000 + b"caf\xe9 \xff\xfe")
    assert response.status_code == 202, response.text
    file = api.wait_file(key, response.json()["file_id"])
    assert file["status"] == "failed"
    assert "UTF-8" in file["error"]
