"""The support loop's pages: the app's curated answers, and what went unanswered.

``/answers`` lists, writes, changes and deletes curated answers (``/v1/answers``);
``/unanswered`` shows the groups of unanswered questions (``GET /v1/analytics/unanswered``) and
the answers rated down (``GET /v1/feedback?rating=down``), each with one form that turns it into
a curated answer, its questions already filled in: what a support manager does every week is
read what customers did not get and write the answer once.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Request, get
from litestar.response import Template

from obdal_common.errors import BadRequest
from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import PageContext, page, page_context

__all__ = ["SUPPORT_PAGES"]

_ANSWERS_PER_PAGE: Final = 50
# Questions a curated answer may have (ingest's limit): a prefilled form never starts over it.
_MAX_QUESTIONS: Final = 20
# How many of a group's newest unanswered questions are offered as further phrasings.
_EXAMPLES: Final = 5
_GROUPS_PER_PAGE: Final = 20
_RATED_DOWN_SHOWN: Final = 20


def _normal(question: str) -> str:
    """A question as ingest compares curated questions: spacing and case aside."""
    return " ".join(question.split()).casefold()


def _distinct(questions: list[str]) -> list[str]:
    kept: dict[str, str] = {}
    for question in questions:
        if question.strip():
            kept.setdefault(_normal(question), question.strip())
    return list(kept.values())[:_MAX_QUESTIONS]


async def _files(request: Request[Any, Any, Any], ctx: PageContext) -> list[dict[str, Any]]:
    """The app's files a curated answer may name as its source, by name."""
    listed = (await console_api(request).get(request, "/v1/files", app_id=ctx.app_id))["files"]
    return sorted(
        ({"file_id": f["file_id"], "filename": f["filename"]} for f in listed), key=lambda f: f["filename"]
    )


async def _curated_questions(request: Request[Any, Any, Any], ctx: PageContext) -> set[str]:
    """The questions of the app's most recently written curated answers (one page of 100: those
    are the ones just written from this page), to mark what has been answered since."""
    listed = await console_api(request).get(request, "/v1/answers", app_id=ctx.app_id, params={"limit": 100})
    return {_normal(q) for a in listed["answers"] for q in a["questions"]}


@get("/apps/{app_id:str}/answers", include_in_schema=False)
async def answers_page(request: Request[Any, Any, Any], app_id: str, cursor: str | None = None) -> Template:
    ctx = await page_context(request, app_id=app_id)
    listed, files = await asyncio.gather(
        console_api(request).get(
            request, "/v1/answers", app_id=ctx.app_id, params={"limit": _ANSWERS_PER_PAGE, "cursor": cursor}
        ),
        _files(request, ctx),
    )
    names = {f["file_id"]: f["filename"] for f in files}
    return page(
        "answers.html",
        ctx,
        active="answers",
        title="Curated answers",
        answers=listed["answers"],
        next_cursor=listed["next_cursor"],
        paged=cursor is not None,
        files=files,
        file_names=names,
    )


@get("/apps/{app_id:str}/unanswered", include_in_schema=False)
async def unanswered_page(
    request: Request[Any, Any, Any],
    app_id: str,
    start_date: str | None = None,
    end_date: str | None = None,
    cursor: str | None = None,
) -> Template:
    ctx = await page_context(request, app_id=app_id)
    api = console_api(request)
    dates = {"start_date": start_date, "end_date": end_date}

    async def dated() -> tuple[dict[str, Any], dict[str, Any], str]:
        """The groups and the rated-down answers of the dates, and what the API said of them."""
        try:
            return (
                *await asyncio.gather(
                    api.get(
                        request,
                        "/v1/analytics/unanswered",
                        app_id=ctx.app_id,
                        params={**dates, "cursor": cursor, "limit": _GROUPS_PER_PAGE, "examples": _EXAMPLES},
                    ),
                    api.get(
                        request,
                        "/v1/feedback",
                        app_id=ctx.app_id,
                        params={**dates, "rating": "down", "limit": _RATED_DOWN_SHOWN},
                    ),
                ),
                "",
            )
        except BadRequest as error:
            # A date range the API refuses is said above the filter, which stays to be corrected.
            return {"groups": [], "next_cursor": None, "as_of": None, **dates}, {"feedback": []}, str(error)

    # Independent reads, made at once: the page takes as long as the slowest.
    (found, rated, range_error), answered, files = await asyncio.gather(
        dated(), _curated_questions(request, ctx), _files(request, ctx)
    )
    groups = [
        {
            **g,
            "prefill": _distinct([g["representative"], *(e["question"] for e in g["examples"])]),
            "answered": _normal(g["representative"]) in answered,
        }
        for g in found["groups"]
    ]
    rated_down = [{**f, "answered": _normal(f["question"]) in answered} for f in rated["feedback"]]
    return page(
        "unanswered.html",
        ctx,
        active="unanswered",
        title="Unanswered questions",
        groups=groups,
        rated_down=rated_down,
        start_date=found["start_date"] or "",
        end_date=found["end_date"] or "",
        as_of=found["as_of"],
        next_cursor=found["next_cursor"],
        range_error=range_error,
        files=files,
    )


SUPPORT_PAGES = [answers_page, unanswered_page]
