"""The offline answerer on the labelled help-centre set, and what a declined or small-talk turn looks like.

The first tests hold the default model (MiniLM relevance floor + the extractive answerer)
to the targets of docs/chat.md on tests/data/helpcentre, through the product's own chunker,
index and grounding; the others check the same behaviour through the running stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from obdal_chat.extractive import NOT_FOUND
from obdal_common.settings import ObdalSettings
from obdal_retrieval import HybridIndex, close_indexes, open_index
from obdal_retrieval.embedders import relevance_floor
from obdal_retrieval.minilm import MINILM_MODEL_ID
from tests.answer_set import HELPCENTRE, Report, ask_all, index_helpcentre, load_questions
from tests.api import Api


@pytest.fixture(scope="module")
async def helpcentre_report(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Report]:
    index: HybridIndex = await open_index(ObdalSettings(data_dir=tmp_path_factory.mktemp("answers")))
    try:
        await index_helpcentre(index)
        yield await ask_all(index, load_questions(), min_relevance=relevance_floor(MINILM_MODEL_ID))
    finally:
        await close_indexes()


def _failures(report: Report, kind: str) -> str:
    return "\n".join(
        f"{j.verdict}: {j.question.text!r} -> {j.answer[:160]!r}"
        for j in report.failures()
        if j.question.kind == kind
    )


def test_answerable_questions_get_the_fact(helpcentre_report: Report) -> None:
    assert helpcentre_report.share("answerable", "correct") >= 0.85, _failures(
        helpcentre_report, "answerable"
    )


def test_unanswerable_questions_are_declined_without_sources(helpcentre_report: Report) -> None:
    assert helpcentre_report.share("unanswerable", "correct") >= 0.90, _failures(
        helpcentre_report, "unanswerable"
    )


def test_small_talk_is_answered_without_sources(helpcentre_report: Report) -> None:
    assert helpcentre_report.share("smalltalk", "correct") == 1.0, _failures(helpcentre_report, "smalltalk")


@pytest.fixture(scope="module")
def helpdesk(api: Api) -> str:
    _, key = api.new_tenant("helpdesk")
    for path in sorted(HELPCENTRE.glob("*.md")):
        api.index(key, path.name, path.read_text())
    return key


def test_greeting_gets_a_friendly_reply_and_no_sources(api: Api, helpdesk: str) -> None:
    reply = api.chat_stream(helpdesk, "Hello!")
    assert reply.text().startswith("Hello!")
    assert reply.one("sources")["sources"] == []
    assert reply.one("end")["answered"] is True


def test_off_topic_question_is_declined_with_no_sources(api: Api, helpdesk: str) -> None:
    reply = api.chat_stream(helpdesk, "What is the capital of France?")
    assert reply.text() == NOT_FOUND
    assert reply.one("sources")["sources"] == []
    end = reply.one("end")
    assert end["answered"] is False

    # Metering keeps the outcome, so unanswered questions can be counted later.
    session = api.wait_session(helpdesk, end["session_id"], messages=2)
    assert [m.get("outcome") for m in session["messages"]] == [None, "declined"]


def test_grounded_json_answer_cites_only_relevant_passages(api: Api, helpdesk: str) -> None:
    response = api.chat(helpdesk, "How long does express shipping take?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "1 to 2 business days" in body["content"]
    assert body["answered"] is True
    assert body["sources"], body
    assert {s["filename"] for s in body["sources"]} >= {"shipping.md"}
    # Scores are relevance (cosine), every cited one over the calibrated floor.
    assert all(s["score"] >= relevance_floor(MINILM_MODEL_ID) for s in body["sources"])


def test_summary_request_quotes_the_document_in_order(api: Api, helpdesk: str) -> None:
    body = api.chat(helpdesk, "Summarize the outage playbook").json()
    assert body["content"].startswith("Here is an overview of outage-playbook.md")
    points = [line for line in body["content"].splitlines() if line.startswith("- ")]
    assert len(points) >= 3
    text = (HELPCENTRE / "outage-playbook.md").read_text()
    # Each point is a sentence of the playbook, in the order the playbook has them.
    positions = [text.find(p.split(": ", 1)[-1].rsplit(" [", 1)[0].replace("'", '"')) for p in points]
    assert -1 not in positions, points
    assert positions == sorted(positions)
