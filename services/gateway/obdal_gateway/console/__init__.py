"""The web console at ``/console``: server-rendered pages for the people who run support.

Every page is a client of our own HTTP API (:mod:`obdal_gateway.console.api_client`): it reads
through ``/v1/...`` with the operator's cookie, and the browser makes every change by calling the
API itself (``static/console.js``, with the session's CSRF token). Nothing here reads NATS, Redis,
MongoDB or the index. Why server-rendered Jinja and a little plain JavaScript rather than a
single-page app: no Node build on a fresh machine, nothing third-party in the page, pages that
are small (docs/console.md has their weights) and whose every user-supplied string is escaped by
the template engine.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.static_files import create_static_files_router

from obdal_common.errors import ObdalError
from obdal_gateway.console.pages.account import ACCOUNT_PAGES
from obdal_gateway.console.pages.audit import AUDIT_PAGES
from obdal_gateway.console.pages.conversations import CONVERSATION_PAGES
from obdal_gateway.console.pages.documents import DOCUMENT_PAGES
from obdal_gateway.console.pages.keys import KEY_PAGES
from obdal_gateway.console.pages.operators import OPERATOR_PAGES
from obdal_gateway.console.pages.overview import OVERVIEW_PAGES
from obdal_gateway.console.pages.playground import PLAYGROUND_PAGES
from obdal_gateway.console.pages.settings import SETTINGS_PAGES
from obdal_gateway.console.pages.sources import SOURCE_PAGES
from obdal_gateway.console.pages.support import SUPPORT_PAGES
from obdal_gateway.console.pages.webhooks import WEBHOOK_PAGES
from obdal_gateway.console.pages.widget_settings import WIDGET_PAGES
from obdal_gateway.console.render import CONSOLE, console_error, template_config

__all__ = ["console_routers", "template_config"]

# Each page module's handlers; a new screen adds its list here.
_PAGES = [
    *ACCOUNT_PAGES,
    *OVERVIEW_PAGES,
    *SUPPORT_PAGES,
    *CONVERSATION_PAGES,
    *SETTINGS_PAGES,
    *AUDIT_PAGES,
    *OPERATOR_PAGES,
    *DOCUMENT_PAGES,
    *SOURCE_PAGES,
    *PLAYGROUND_PAGES,
    *KEY_PAGES,
    *WIDGET_PAGES,
    *WEBHOOK_PAGES,
]


def console_routers() -> list[Router]:
    pages = Router(
        path=CONSOLE,
        route_handlers=_PAGES,
        exception_handlers={ObdalError: console_error},
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=f"{CONSOLE}/static",
        directories=[Path(__file__).parent / "static"],
        include_in_schema=False,
        # Revalidated on every load: the files are small and change with each release.
        cache_control=None,
    )
    return [pages, static]
