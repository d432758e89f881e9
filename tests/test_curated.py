"""Curated answers through the public API of the running stack: written, listed, changed and
deleted (``/v1/answers``), and given as written to questions close enough to theirs, through
every chat path; their store's own limits against a nats-server (the cap per app, duplicates)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS

from obdal_common import subjects
from obdal_common.errors import Conflict
from obdal_common.messaging import close, connect, key_value
from obdal_common.schemas import CuratedAnswerCreate, CuratedAnswerQuery
from obdal_ingest.answers import CuratedAnswerStore
from obdal_ingest.statuses import FileStatusStore
from obdal_retrieval.embedders import HashingEmbedder, curated_passage_floor, curated_threshold
from obdal_retrieval.minilm import MINILM_MODEL_ID
from tests.api import Api, parse_sse
from tests.conftest import Servers
from tests.test_end_to_end import POLICY

ORIGIN = {"Origin": "https://help.curated.example.com"}
QUESTIONS = ["How do I reset my password?", "I forgot my password"]
ANSWER = (
    "Open Settings, then Security, and choose Reset password. A link to set a new one arrives by "
    "email within five minutes; it works once and for one hour."
)
# Measured with MiniLM: 0.84 to "I forgot my password" (over the threshold), 0.50 to the closest
# curated question (between the relevance floor and the threshold), 0.09.
PARAPHRASE = "I can't remember my password, how do I change it?"
# Under the threshold as a question, over the passage floor as a passage (the answer's words).
RELATED = "How long until the password email arrives?"
# Close as a question (0.50) but not answered by the passage (0.33): never given it.
NEIGHBOUR = "How do I change my username?"
UNRELATED = "Which courier do you ship with?"
PASSAGE_FIELDS = {"file_id", "filename", "snippet", "score", "page", "url"}  # url: a website page's
THRESHOLD = curated_threshold(MINILM_MODEL_ID)  # the stack's embedder


def create(api: Api, key: str, **body: Any) -> httpx.Response:
    return api.http.post("/v1/answers", headers=api.auth(key), json=body)


def created(api: Api, key: str, **body: Any) -> dict[str, Any]:
    response = create(api, key, **body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def ask(api: Api, key: str, message: str) -> dict[str, Any]:
    response = api.chat(key, message)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def completion(api: Api, key: str, message: str, **body: Any) -> httpx.Response:
    return api.http.post(
        "/v1/chat/completions",
        headers=api.auth(key),
        json={"model": "obdal", "messages": [{"role": "user", "content": message}], **body},
    )


def test_an_answer_is_created_listed_read_changed_and_deleted(api: Api) -> None:
    _, key = api.new_tenant("curated-crud")
    file_id = api.index(key, "policy.md", POLICY)
    first = created(api, key, questions=[*QUESTIONS, "  how do I   RESET my password? "], answer=ANSWER)
    assert set(first) == {"answer_id", "questions", "answer", "source_file_id", "created_at", "updated_at"}
    assert first["answer_id"].startswith("ans_")
    assert first["questions"] == QUESTIONS  # the duplicate (case and spacing aside) is dropped
    assert (first["answer"], first["source_file_id"]) == (ANSWER, None)
    assert first["created_at"] == first["updated_at"]
    assert first["created_at"].endswith("Z")
    second = created(
        api, key, questions=["Do you ship abroad?"], answer="Yes, to 31 countries.", source_file_id=file_id
    )
    assert second["source_file_id"] == file_id

    got = api.http.get(f"/v1/answers/{first['answer_id']}", headers=api.auth(key))
    assert (got.status_code, got.json()) == (200, first)

    # Most recently updated first, one per page, each once.
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1}
    while True:
        response = api.http.get("/v1/answers", headers=api.auth(key), params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"answers", "next_cursor"}
        pages.append(page)
        if page["next_cursor"] is None:
            break
        params = {"limit": 1, "cursor": page["next_cursor"]}
    assert [a["answer_id"] for p in pages for a in p["answers"]] == [second["answer_id"], first["answer_id"]]

    changed = api.http.patch(
        f"/v1/answers/{first['answer_id']}",
        headers=api.auth(key),
        json={"answer": "Choose Reset password under Settings, Security.", "source_file_id": file_id},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["questions"], body["answer"], body["source_file_id"]) == (
        QUESTIONS,
        "Choose Reset password under Settings, Security.",
        file_id,
    )
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(first["updated_at"])
    assert body["created_at"] == first["created_at"]
    cleared = api.http.patch(
        f"/v1/answers/{first['answer_id']}",
        headers=api.auth(key),
        json={"questions": ["How can I get a new password?"], "source_file_id": None},
    )
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["questions"], cleared.json()["source_file_id"]) == (
        ["How can I get a new password?"],
        None,
    )
    listed = api.http.get("/v1/answers", headers=api.auth(key)).json()["answers"]
    assert [a["answer_id"] for a in listed] == [first["answer_id"], second["answer_id"]]

    deleted = api.http.delete(f"/v1/answers/{first['answer_id']}", headers=api.auth(key))
    assert (deleted.status_code, deleted.json()) == (200, {"answer_id": first["answer_id"], "deleted": True})
    assert error(api.http.get(f"/v1/answers/{first['answer_id']}", headers=api.auth(key))) == (
        404,
        "answer_not_found",
    )
    assert error(api.http.delete(f"/v1/answers/{first['answer_id']}", headers=api.auth(key))) == (
        404,
        "answer_not_found",
    )

    # Its source file deleted, an answer keeps its text and loses its source.
    assert api.http.delete(f"/v1/files/{file_id}", headers=api.auth(key)).status_code == 200
    kept = api.http.get(f"/v1/answers/{second['answer_id']}", headers=api.auth(key)).json()
    assert (kept["answer"], kept["source_file_id"]) == ("Yes, to 31 countries.", None)
    # Erasing the app's documents erases its curated answers too.
    erased = api.http.delete("/v1/files", headers=api.auth(key), params={"confirm": "true"})
    assert erased.status_code == 200, erased.text
    assert api.http.get("/v1/answers", headers=api.auth(key)).json() == {"answers": [], "next_cursor": None}


def test_bad_answers_are_refused(api: Api) -> None:
    _, key = api.new_tenant("curated-bad")
    assert error(create(api, key, questions=[], answer=ANSWER)) == (422, "invalid_curated_answer")
    assert error(create(api, key, questions=["ok?", "  "], answer=ANSWER)) == (422, "invalid_curated_answer")
    assert error(create(api, key, questions=QUESTIONS, answer=" \n ")) == (422, "invalid_curated_answer")
    assert error(create(api, key, questions=QUESTIONS, answer="x" * 8001)) == (
        413,
        "curated_answer_too_large",
    )
    assert error(create(api, key, questions=["q" * 501], answer=ANSWER)) == (413, "curated_answer_too_large")
    many = [f"Question number {n}?" for n in range(21)]
    assert error(create(api, key, questions=many, answer=ANSWER)) == (413, "curated_answer_too_large")
    unknown_file = create(
        api, key, questions=QUESTIONS, answer=ANSWER, source_file_id="file_0000000000000000"
    )
    assert error(unknown_file) == (404, "file_not_found")
    assert error(create(api, key, questions=QUESTIONS, answer=ANSWER, source_file_id="nope")) == (
        404,
        "file_not_found",
    )
    # The body's shape is the gateway's 400, as everywhere.
    assert error(create(api, key, questions=QUESTIONS, answer=ANSWER, extra=1)) == (400, "invalid_request")
    assert error(create(api, key, answer=ANSWER)) == (400, "invalid_request")
    assert error(create(api, key, questions="How?", answer=ANSWER)) == (400, "invalid_request")
    assert error(api.http.get("/v1/answers", headers=api.auth(key), params={"limit": 0})) == (
        400,
        "invalid_limit",
    )
    assert error(api.http.get("/v1/answers", headers=api.auth(key), params={"cursor": "x"})) == (
        400,
        "invalid_cursor",
    )

    answer_id = created(api, key, questions=QUESTIONS, answer=ANSWER)["answer_id"]
    patch = api.http.patch(f"/v1/answers/{answer_id}", headers=api.auth(key), json={"questions": []})
    assert error(patch) == (422, "invalid_curated_answer")
    patch = api.http.patch(f"/v1/answers/{answer_id}", headers=api.auth(key), json={"answer": "y" * 8001})
    assert error(patch) == (413, "curated_answer_too_large")
    patch = api.http.patch(f"/v1/answers/{answer_id}", headers=api.auth(key), json={"colour": "red"})
    assert error(patch) == (400, "invalid_request")
    for unknown in ("ans_0000000000000000", "not-an-id"):
        assert error(api.http.get(f"/v1/answers/{unknown}", headers=api.auth(key))) == (
            404,
            "answer_not_found",
        )
        patched = api.http.patch(f"/v1/answers/{unknown}", headers=api.auth(key), json={"answer": "x"})
        assert error(patched) == (404, "answer_not_found")
    # Nothing refused was stored.
    assert [a["answer_id"] for a in api.http.get("/v1/answers", headers=api.auth(key)).json()["answers"]] == [
        answer_id
    ]


def test_answers_are_the_apps_own_and_not_a_publishable_keys(api: Api) -> None:
    app_id, key = api.new_tenant("curated-mine")
    _, other = api.new_tenant("curated-theirs")
    answer_id = created(api, key, questions=QUESTIONS, answer=ANSWER)["answer_id"]
    assert error(api.http.get(f"/v1/answers/{answer_id}", headers=api.auth(other))) == (
        404,
        "answer_not_found",
    )
    patched = api.http.patch(f"/v1/answers/{answer_id}", headers=api.auth(other), json={"answer": "mine now"})
    assert error(patched) == (404, "answer_not_found")
    assert error(api.http.delete(f"/v1/answers/{answer_id}", headers=api.auth(other))) == (
        404,
        "answer_not_found",
    )
    assert api.http.get("/v1/answers", headers=api.auth(other)).json()["answers"] == []
    # The other app's questions never get this app's answer.
    assert ask(api, other, PARAPHRASE)["content"] != ANSWER

    widget = api.create_key(app_id, kind="publishable", allowed_origins=[ORIGIN["Origin"]])["key"]
    headers = {**api.auth(widget), **ORIGIN}
    refused = [
        api.http.post("/v1/answers", headers=headers, json={"questions": QUESTIONS, "answer": ANSWER}),
        api.http.get("/v1/answers", headers=headers),
        api.http.get(f"/v1/answers/{answer_id}", headers=headers),
        api.http.patch(f"/v1/answers/{answer_id}", headers=headers, json={"answer": "x"}),
        api.http.delete(f"/v1/answers/{answer_id}", headers=headers),
    ]
    assert [error(r) for r in refused] == [(403, "insufficient_scope")] * 5
    assert api.http.get(f"/v1/answers/{answer_id}", headers=api.auth(key)).json()["answer"] == ANSWER


def _curated_source(source: dict[str, Any], answer_id: str, file_id: str) -> None:
    assert source["kind"] == "curated"
    assert source["answer_id"] == answer_id
    assert (source["file_id"], source["filename"], source["snippet"]) == (file_id, "policy.md", QUESTIONS[0])
    assert THRESHOLD <= source["score"] <= 1


def test_a_close_question_gets_the_curated_answer_through_every_path(api: Api) -> None:
    _, key = api.new_tenant("curated-chat")
    file_id = api.index(key, "policy.md", POLICY)
    answer_id = created(api, key, questions=QUESTIONS, answer=ANSWER, source_file_id=file_id)["answer_id"]

    answer = ask(api, key, PARAPHRASE)
    assert answer["content"] == ANSWER
    assert answer["answered"] is True
    assert answer["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}
    [source] = answer["sources"]
    _curated_source(source, answer_id, file_id)

    streamed = api.chat_stream(key, PARAPHRASE)
    assert streamed.status == 200
    assert streamed.names()[0] == "message"
    assert streamed.names()[-2:] == ["sources", "end"]
    assert streamed.names().count("message") > 3  # streamed a few words at a time
    assert streamed.text() == ANSWER
    _curated_source(streamed.one("sources")["sources"][0], answer_id, file_id)
    assert streamed.one("end")["answered"] is True

    done = completion(api, key, PARAPHRASE)
    assert done.status_code == 200, done.text
    assert done.json()["choices"][0]["message"]["content"] == ANSWER
    _curated_source(done.json()["sources"][0], answer_id, file_id)
    with api.http.stream(
        "POST",
        "/v1/chat/completions",
        headers=api.auth(key),
        json={"model": "obdal", "stream": True, "messages": [{"role": "user", "content": PARAPHRASE}]},
    ) as response:
        lines = [line for line in response.iter_lines() if line != "data: [DONE]"]
    chunks = [e.data for e in parse_sse(lines)[0]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == ANSWER
    _curated_source(chunks[-1]["sources"][0], answer_id, file_id)

    # A follow-up in a conversation is matched on its own words, as the first question.
    followed = completion(
        api,
        key,
        PARAPHRASE,
        messages=[
            {"role": "user", "content": UNRELATED},
            {"role": "assistant", "content": "We ship with Zorblax Couriers."},
            {"role": "user", "content": PARAPHRASE},
        ],
    )
    assert followed.json()["choices"][0]["message"]["content"] == ANSWER

    # An unrelated question is answered from the documents, its sources as they always were.
    other = ask(api, key, UNRELATED)
    assert "Zorblax" in other["content"]
    assert ANSWER not in other["content"]
    assert other["sources"]
    assert all(set(s) == PASSAGE_FIELDS for s in other["sources"])

    # The turn is kept as curated.
    session = api.wait_session(key, answer["session_id"], messages=2)
    assert [m["outcome"] for m in session["messages"] if m["role"] == "assistant"] == ["curated"]
    assert session["messages"][1]["content"] == ANSWER

    # Its source file renamed by a replacement, the answer cites it by its new name.
    replaced = api.http.put(
        f"/v1/files/{file_id}",
        headers=api.auth(key),
        params={"wait": "true"},
        files={"file": ("returns.md", (POLICY + "\nUpdated.\n").encode())},
        timeout=150,
    )
    assert replaced.status_code == 200, replaced.text
    assert ask(api, key, PARAPHRASE)["sources"][0]["filename"] == "returns.md"


def test_a_related_answer_joins_the_passages_and_a_deleted_one_is_no_longer_given(api: Api) -> None:
    _, key = api.new_tenant("curated-related")
    api.index(key, "policy.md", POLICY)
    answer_id = created(api, key, questions=QUESTIONS, answer=ANSWER)["answer_id"]
    # Under the threshold but relevant: a passage for the model, cited first, not the answer as written.
    related = ask(api, key, RELATED)
    assert related["content"] != ANSWER
    assert related["sources"][0]["kind"] == "curated"
    assert related["sources"][0]["answer_id"] == answer_id
    assert (related["sources"][0]["file_id"], related["sources"][0]["filename"]) == ("", "Curated answer")
    assert curated_passage_floor(MINILM_MODEL_ID) <= related["sources"][0]["score"] < THRESHOLD
    neighbour = ask(api, key, NEIGHBOUR)
    assert all(s.get("kind", "passage") == "passage" for s in neighbour["sources"])

    assert ask(api, key, PARAPHRASE)["content"] == ANSWER
    assert api.http.delete(f"/v1/answers/{answer_id}", headers=api.auth(key)).status_code == 200
    # Chat workers follow the bucket by a watch: the change arrives within moments.
    deadline = time.monotonic() + 5
    while (after := ask(api, key, PARAPHRASE))["content"] == ANSWER:
        assert time.monotonic() < deadline, "the deleted curated answer is still given"
        time.sleep(0.1)
    assert all(s.get("kind", "passage") == "passage" for s in after["sources"])


@pytest.fixture
async def nc(servers: Servers) -> AsyncIterator[NATS]:
    client = await connect(servers.nats.url, name="curated-test")
    yield client
    await close(client)


async def test_the_store_keeps_at_most_its_cap_per_app(nc: NATS) -> None:
    js = nc.jetstream()
    store = CuratedAnswerStore(
        await key_value(js, subjects.KV_ANSWERS),
        js=js,
        statuses=FileStatusStore(await key_value(js, subjects.KV_FILES), js=js),
        embedder=HashingEmbedder(),
        max_per_app=2,
    )
    app = f"app_capped{time.time_ns()}"
    for n in range(2):
        await store.create(CuratedAnswerCreate(app_id=app, questions=[f"Question {n}?"], answer="Yes."))
    with pytest.raises(Conflict) as refused:
        await store.create(CuratedAnswerCreate(app_id=app, questions=["One more?"], answer="No."))
    assert refused.value.code == "too_many_curated_answers"
    # Another app has its own count; a deleted answer frees its place.
    await store.create(CuratedAnswerCreate(app_id=f"{app}x", questions=["Mine?"], answer="Yes."))
    page = await store.list_answers(CuratedAnswerQuery(app_id=app))
    assert [len(a.vectors) for a in page.answers] == [2, 2]  # the question, and it with the answer
    assert {a.embedder for a in page.answers} == {"obdal/hashing-384"}
    await store.delete_app(app)
    await store.create(CuratedAnswerCreate(app_id=app, questions=["Again?"], answer="Yes."))
    assert len((await store.list_answers(CuratedAnswerQuery(app_id=app))).answers) == 1


def test_the_routes_are_in_the_openapi_document(api: Api) -> None:
    paths = api.http.get("/docs/openapi.json").json()["paths"]
    create_op = paths["/v1/answers"]["post"]
    assert {"201", "400", "404", "409", "413", "422"} <= set(create_op["responses"])
    assert "get" in paths["/v1/answers"]
    one = paths["/v1/answers/{answer_id}"]
    assert {"get", "patch", "delete"} <= set(one)
    assert {"404", "413", "422"} <= set(one["patch"]["responses"])
    assert all(
        op.get("summary")
        for path in ("/v1/answers", "/v1/answers/{answer_id}")
        for op in paths[path].values()
    )
