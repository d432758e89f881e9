"""Signed webhooks through the running stack: events from every service, verified by a receiver with
the ``standardwebhooks`` library; a receiver down for a while, hanging, or failing for good; replay;
outbound refusals (docs/webhooks.md)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from obdal_common.errors import UnprocessableContent
from obdal_common.outbound import OutboundClient, OutboundPolicy
from obdal_webhooks.endpoints import EndpointStore
from tests.api import Api, poll
from tests.test_end_to_end import POLICY
from tests.webhook_receiver import Receiver

QUESTION = "Which courier do you ship with?"


def add_endpoint(api: Api, key: str, receiver: Receiver, **body: Any) -> dict[str, Any]:
    response = api.http.post("/v1/webhooks", headers=api.auth(key), json={"url": receiver.url, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    receiver.secret = created["secret"]
    return created


def deliveries(api: Api, key: str, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    response = api.http.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=api.auth(key), params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def test_every_kind_of_event_arrives_signed_once(api: Api) -> None:
    app_id, key = api.new_tenant("hooks-events")
    with Receiver() as receiver:
        endpoint = add_endpoint(api, key, receiver, description="CRM")
        assert endpoint["secret"].startswith("whsec_")
        assert "secret" not in endpoint["secrets"][0]
        # Never shown again.
        again = api.http.get(f"/v1/webhooks/{endpoint['endpoint_id']}", headers=api.auth(key)).json()
        assert "secret" not in again
        assert again["url"] == receiver.url

        file_id = api.index(key, "policy.md", POLICY)
        ready = receiver.wait("file.ready")[0]
        assert ready.data["file_id"] == file_id
        assert ready.data["filename"] == "policy.md"

        answer = api.chat(key, QUESTION, user="alice").json()
        started = receiver.wait("conversation.started")[0]
        answered = receiver.wait("message.answered")[0]
        assert started.data["session_id"] == answer["session_id"] == answered.data["session_id"]
        assert answered.data["message_id"] == answer["message_id"]
        assert answered.data["question"] == QUESTION
        assert answered.data["answer"] == answer["content"]
        assert answered.data["sources"][0]["filename"] == "policy.md"
        # The conversation is heard of before its first answer.
        assert receiver.accepted.index(started) < receiver.accepted.index(answered)

        declined = api.chat(
            key, "What is the boiling point of tungsten?", session_id=answer["session_id"], user="alice"
        )
        assert declined.json()["answered"] is False
        assert receiver.wait("message.declined")[0].data["message_id"] == declined.json()["message_id"]

        rated = api.http.post(
            f"/v1/messages/{answer['message_id']}/feedback",
            headers=api.auth(key),
            json={"rating": "down", "reason": "outdated"},
        )
        assert rated.status_code == 200, rated.text
        feedback = receiver.wait("feedback.created")[0]
        assert (feedback.data["rating"], feedback.data["reason"]) == ("down", "outdated")

        failed = api.upload(key, "broken.pdf", b"%PDF-1.7 not really")
        receiver.wait("file.failed")
        assert receiver.of_type("file.failed")[0].data["file_id"] == failed.json()["file_id"]

        other = api.create_key(app_id, name="to revoke")
        assert api.admin.delete(f"/v1/admin/keys/{other['key_id']}").status_code == 200
        assert receiver.wait("key.revoked")[0].data["key_id"] == other["key_id"]

        time.sleep(0.5)  # anything doubled would have arrived by now
        assert all(r.verified for r in receiver.accepted), [
            r.type for r in receiver.accepted if not r.verified
        ]
        ids = [r.msg_id for r in receiver.accepted]
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        assert receiver.refused == []

        log = deliveries(api, key, endpoint["endpoint_id"])
        assert {d["state"] for d in log} == {"delivered"}
        assert {d["event_id"] for d in log} == set(ids)
        attempt = log[0]["attempts"][0]
        assert attempt["status_code"] == 204
        assert attempt["latency_ms"] > 0


def test_an_event_filter_and_another_app_keep_events_apart(api: Api) -> None:
    _, key = api.new_tenant("hooks-filter")
    _, other_key = api.new_tenant("hooks-other")
    with Receiver() as only_files, Receiver() as other_app:
        add_endpoint(api, key, only_files, events=["file.ready"])
        add_endpoint(api, other_key, other_app)
        api.index(key, "policy.md", POLICY)
        api.chat(key, QUESTION)
        only_files.wait("file.ready")
        time.sleep(1.0)
        assert {r.type for r in only_files.accepted} == {"file.ready"}
        assert other_app.accepted == []
        bad = api.http.post(
            "/v1/webhooks", headers=api.auth(key), json={"url": only_files.url, "events": ["file.exploded"]}
        )
        assert bad.status_code == 400, bad.text


def test_erasing_a_session_erases_the_deliveries_that_carry_it(api: Api) -> None:
    _, key = api.new_tenant("hooks-erase")
    with Receiver() as receiver:
        endpoint = add_endpoint(api, key, receiver)
        api.index(key, "policy.md", POLICY)
        kept = api.chat(key, QUESTION).json()
        erased = api.chat(key, QUESTION).json()
        receiver.wait("message.answered", count=2)
        log = deliveries(api, key, endpoint["endpoint_id"])
        assert {d["type"] for d in log} == {"file.ready", "conversation.started", "message.answered"}

        gone = api.http.delete(f"/v1/sessions/{erased['session_id']}", headers=api.auth(key))
        assert gone.status_code == 200, gone.text
        after = deliveries(api, key, endpoint["endpoint_id"])
        # The erased conversation's two events are gone from the log; the rest stays.
        assert {d["event_id"] for d in after} == {d["event_id"] for d in log} - {
            f"started.{erased['session_id']}",
            f"answer.{erased['message_id']}",
        }
        assert f"answer.{kept['message_id']}" in {d["event_id"] for d in after}

    # An id that could never be one is simply not found (it is not a valid KV key either).
    odd = api.http.get("/v1/webhooks/%F2%8D%97%96%22%C3%A0", headers=api.auth(key))
    assert odd.status_code == 404, odd.text
    assert odd.json()["error"]["code"] == "webhook_not_found"


def test_a_spent_budget_is_heard_of_once_a_day(api: Api) -> None:
    app_id, secret = api.new_tenant("hooks-budget")
    api.index(secret, "policy.md", POLICY)
    # Ten tokens a day: no answer fits, so the chat worker refuses the first question already.
    tight = api.create_key(app_id, name="tight", token_budget=10)
    with Receiver() as receiver:
        add_endpoint(api, secret, receiver, events=["budget.reached"])
        for _ in range(3):
            refused = api.chat(tight["key"], QUESTION)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "token_budget_exhausted"
        reached = receiver.wait("budget.reached")[0]
        time.sleep(1.0)  # the other refusals' events, were they sent twice, would be here by now
    assert len(receiver.accepted) == 1
    assert reached.data["key_id"] == tight["key_id"]
    assert reached.data["token_budget"] == 10
    assert reached.msg_id == f"budget.{tight['key_id']}.{reached.data['day']}"


def test_a_receiver_down_for_a_while_gets_everything_later_in_order_once(api: Api) -> None:
    _, key = api.new_tenant("hooks-down")
    api.index(key, "policy.md", POLICY)
    with Receiver(fail_with=503) as receiver:
        endpoint = add_endpoint(api, key, receiver, events=["message.answered", "conversation.started"])
        session = api.chat(key, QUESTION).json()["session_id"]
        for _ in range(3):
            assert api.chat(key, QUESTION, session_id=session).status_code == 200
        poll(lambda: len(receiver.refused), lambda n: n >= 3, what="failed attempts")
        pending = deliveries(api, key, endpoint["endpoint_id"], status="pending")
        assert pending
        assert all(d["next_attempt_at"] for d in pending)
        assert any(a["status_code"] == 503 for d in pending for a in d["attempts"])
        receiver.fail_with = 0  # back up
        answered = receiver.wait("message.answered", 4)
        time.sleep(1.0)
        got = [r for r in receiver.accepted]
        assert [r.type for r in got] == ["conversation.started"] + ["message.answered"] * 4
        assert len({r.msg_id for r in got}) == 5 == len(receiver.accepted)
        # In the order they happened, each retry signed afresh under the same webhook-id.
        times = [r.data["message_id"] for r in answered]
        log = {d["event_id"]: d for d in deliveries(api, key, endpoint["endpoint_id"])}
        assert len(times) == 4
        first = got[0]
        tries = log[first.msg_id]["attempts"]
        assert [a["status_code"] for a in tries][-1] == 204
        assert len(tries) >= 2
        refused_first = [r for r in receiver.refused if r.msg_id == first.msg_id]
        assert refused_first
        assert refused_first[0].msg_id == first.msg_id
        assert refused_first[0].headers["webhook-signature"] != first.headers["webhook-signature"]


def test_a_hanging_receiver_is_given_up_on_in_bounded_time(api: Api) -> None:
    _, key = api.new_tenant("hooks-hang")
    with Receiver(hang_s=5) as receiver:
        endpoint = add_endpoint(api, key, receiver)
        api.index(key, "policy.md", POLICY)
        log = poll(
            lambda: deliveries(api, key, endpoint["endpoint_id"]),
            lambda found: bool(found and found[0]["attempts"]),
            what="an attempt",
        )
        attempt = log[0]["attempts"][0]
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("timeout")
        assert attempt["latency_ms"] < 3500  # OBDAL_WEBHOOK_TIMEOUT_S=2 in the stack
        receiver.hang_s = 0
        receiver.wait("file.ready", timeout=30)


def test_an_endpoint_failing_for_long_is_disabled_with_an_audit_entry_and_an_event(api: Api) -> None:
    app_id, key = api.new_tenant("hooks-dead")
    with Receiver(fail_with=500) as dead, Receiver() as watcher:
        endpoint = add_endpoint(api, key, dead)
        add_endpoint(api, key, watcher, events=["endpoint.disabled"])
        api.index(key, "policy.md", POLICY)
        # OBDAL_WEBHOOK_DISABLE_AFTER_S=6 in the stack.
        disabled = watcher.wait("endpoint.disabled", timeout=40)[0]
        assert disabled.data["endpoint_id"] == endpoint["endpoint_id"]
        shown = api.http.get(f"/v1/webhooks/{endpoint['endpoint_id']}", headers=api.auth(key)).json()
        assert shown["enabled"] is False
        assert "failed since" in shown["disabled_reason"]
        audit = poll(
            lambda: api.admin.get(
                "/v1/admin/audit", params={"app_id": app_id, "action": "webhook.disabled"}
            ).json(),
            lambda body: bool(body["events"]),
            what="the audit entry",
        )
        entry = audit["events"][0]
        assert (entry["actor"], entry["target"]) == ("obdal-webhooks", endpoint["endpoint_id"])
        # Held, not dropped: enabled again, the receiver (now up) gets what waited.
        tried = len(dead.refused)
        time.sleep(1.5)
        assert len(dead.refused) == tried, "a disabled endpoint was still posted to"
        dead.fail_with = 0
        enabled = api.http.patch(
            f"/v1/webhooks/{endpoint['endpoint_id']}", headers=api.auth(key), json={"enabled": True}
        )
        assert enabled.status_code == 200
        assert enabled.json()["disabled_reason"] is None
        dead.wait("file.ready", timeout=30)


def test_replay_sends_the_same_webhook_id_and_rotation_signs_with_both_secrets(api: Api) -> None:
    _, key = api.new_tenant("hooks-replay")
    with Receiver() as receiver:
        endpoint = add_endpoint(api, key, receiver)
        api.index(key, "policy.md", POLICY)
        first = receiver.wait("file.ready")[0]
        old_secret = receiver.secret
        rotated = api.http.post(
            f"/v1/webhooks/{endpoint['endpoint_id']}/rotate", headers=api.auth(key), json={"overlap_s": 3600}
        )
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        assert new_secret != old_secret
        assert len(rotated.json()["secrets"]) == 2
        delivery = deliveries(api, key, endpoint["endpoint_id"])[0]
        replay = api.http.post(
            f"/v1/webhooks/{endpoint['endpoint_id']}/deliveries/{delivery['delivery_id']}/replay",
            headers=api.auth(key),
        )
        assert replay.status_code == 202, replay.text
        again = receiver.wait("file.ready", 2)[1]
        assert again.msg_id == first.msg_id
        # Receivers on either secret verify it during the overlap.
        for secret in (old_secret, new_secret):
            Webhook(secret).verify(again.body, again.headers)
        # A captured request presented again later fails the timestamp tolerance (5 minutes).
        stale = {**again.headers, "webhook-timestamp": str(int(time.time()) - 600)}
        stale["webhook-signature"] = Webhook(new_secret).sign(
            again.msg_id, datetime.now(UTC) - timedelta(seconds=600), again.body.decode()
        )
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret).verify(again.body, stale)
        missing = api.http.post(
            f"/v1/webhooks/{endpoint['endpoint_id']}/deliveries/dlv_{'0' * 32}/replay", headers=api.auth(key)
        )
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "delivery_not_found")


def test_endpoint_urls_are_refused_with_a_reason(api: Api) -> None:
    _, key = api.new_tenant("hooks-refused")
    cases = {
        "http://10.1.2.3/hook": "private_address",
        "http://169.254.169.254/latest/meta-data": "private_address",
        "http://[::ffff:10.0.0.1]/hook": "private_address",
        "http://user:pass@127.0.0.1/hook": "credentials_in_url",
        "ftp://127.0.0.1/hook": "scheme_not_allowed",
        "not a url": "scheme_not_allowed",
    }
    for url, code in cases.items():
        response = api.http.post("/v1/webhooks", headers=api.auth(key), json={"url": url})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["code"] == code, (url, response.json())
    # A scope of its own: a key without it may not manage webhooks, a publishable key never.
    _, chat_only = api.new_tenant("hooks-scope", scopes=["chat"])
    refused = api.http.get("/v1/webhooks", headers=api.auth(chat_only))
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_scope")
    unknown = api.http.get("/v1/webhooks/whk_nope", headers=api.auth(key))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "webhook_not_found")


async def test_https_only_unless_the_operator_allows_http() -> None:
    async with OutboundClient(OutboundPolicy(), user_agent="test") as client:
        store = EndpointStore(kv=None, js=None, client=client, allow_http=False, max_per_app=1)  # type: ignore[arg-type]
        with pytest.raises(UnprocessableContent) as refused:
            await store._check_url("http://example.com/hook")
        assert refused.value.code == "scheme_not_allowed"
        assert "OBDAL_WEBHOOK_ALLOW_HTTP" in refused.value.message


def test_status_reports_the_webhooks_service(api: Api) -> None:
    body = httpx.get(f"{api.url}/v1/status", headers=api.admin.headers, timeout=5).json()
    assert body["services"]["webhooks"]["ok"] is True
