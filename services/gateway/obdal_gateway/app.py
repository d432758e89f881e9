"""The Litestar application: routes, middleware, auth, error mapping, OpenAPI, lifespan wiring."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import ASGIMiddleware
from litestar.openapi import OpenAPIConfig

from obdal_gateway.auth import check_declarations, provide_principal
from obdal_gateway.console import console_routers, template_config
from obdal_gateway.cors import PolicyHeadersMiddleware
from obdal_gateway.encodings import IdentityBodyMiddleware
from obdal_gateway.error_responses import EXCEPTION_HANDLERS
from obdal_gateway.instrumentation import RequestMetrics, name_span, prometheus_metrics, tracing_plugin
from obdal_gateway.openapi_docs import SwaggerDocs, complete_openapi, docs_router
from obdal_gateway.routes.admin import admin_router
from obdal_gateway.routes.analytics import analytics, unanswered
from obdal_gateway.routes.answers import create_answer, delete_answer, get_answer, list_answers, update_answer
from obdal_gateway.routes.chat import chat
from obdal_gateway.routes.completions import chat_completions
from obdal_gateway.routes.console_account import CONSOLE_ACCOUNT_HANDLERS
from obdal_gateway.routes.export import export_app
from obdal_gateway.routes.feedback import list_feedback, rate_message
from obdal_gateway.routes.files import (
    delete_all_files,
    delete_file,
    get_file,
    list_files,
    replace_file,
    upload_file,
)
from obdal_gateway.routes.handoff import HANDOFF_HANDLERS
from obdal_gateway.routes.retention import retention_router
from obdal_gateway.routes.sessions import (
    delete_session,
    delete_user,
    export_sessions,
    get_session,
    list_sessions,
)
from obdal_gateway.routes.sources import SOURCE_HANDLERS
from obdal_gateway.routes.status import live, status
from obdal_gateway.routes.usage import usage
from obdal_gateway.routes.webhooks import WEBHOOK_HANDLERS
from obdal_gateway.routes.widget import demo_page, widget_script
from obdal_gateway.routes.widget_challenge import widget_challenge
from obdal_gateway.routes.widget_conversation import widget_conversation
from obdal_gateway.routes.widget_settings import widget_config
from obdal_gateway.security_headers import SecurityHeaders
from obdal_gateway.slow_clients import SendTimeout
from obdal_gateway.state import Gateway

__all__ = ["create_app"]

# Where the OpenAPI document and its docs page are served.
_DOCS = "/docs"
# Multipart overhead on top of the largest accepted file.
_BODY_SLACK = 64 * 1024
# The conventions every route follows (docs/api.md), where generated clients read them.
_DESCRIPTION = """Chat with your documents: grounded, streamed answers with metered usage.

**Keys**: `Authorization: Bearer <key>`; also the `api_key` field of `POST /v1/chat` and the
`api_key` query parameter of GET requests. The web console's session cookie (`/v1/console/sign-in`)
stands for a key too, with the operator's role on the app named in the `Obdal-App` header and, on
every change, the session's `X-CSRF-Token`; on `/v1/admin` it stands for the operator token, within
the operator's roles.

**Lists**: an object whose array is named for what it holds (`sessions`, `files`, `apps`, `keys`,
`events`, the usage `breakdown`); where paged, `next_cursor` (`null` on the last page) goes back
as `cursor`.

**Dates**: ISO dates, UTC days, both ends inclusive; `start_date` alone runs through today.

**Errors**: `{"error": {"code", "message"}}` with the status of the error's class."""


def _gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


def create_app(gateway: Gateway) -> Litestar:
    """Build the app around connected dependencies (owned and closed by the caller)."""
    # Every middleware, outermost first. Litestar runs `middleware=` per route, after routing, so
    # the router's own 404/405 never pass through it. Security headers, metrics and the send
    # timeout must see every response: they run around routing, outside Litestar's OpenTelemetry
    # middleware (a plugin) and its exception handling, wrapping the app's own ASGI handler below.
    around_routing: list[ASGIMiddleware] = [
        SecurityHeaders(),
        RequestMetrics(),
        SendTimeout(timeout_s=gateway.settings.client_send_timeout_s),
    ]
    per_route: list[ASGIMiddleware] = [
        PolicyHeadersMiddleware(preflight_allowed=gateway.keys.allows_origin),
        IdentityBodyMiddleware(),
    ]
    app = Litestar(
        route_handlers=[
            chat,
            chat_completions,
            upload_file,
            list_files,
            get_file,
            delete_file,
            usage,
            status,
            live,
            admin_router,
            widget_script,
            widget_config,
            widget_conversation,
            widget_challenge,
            demo_page,
            prometheus_metrics,
            list_sessions,
            export_sessions,
            export_app,
            get_session,
            delete_session,
            delete_user,
            rate_message,
            *HANDOFF_HANDLERS,
            list_feedback,
            retention_router,
            replace_file,
            delete_all_files,
            create_answer,
            list_answers,
            get_answer,
            update_answer,
            delete_answer,
            analytics,
            unanswered,
            *SOURCE_HANDLERS,
            *WEBHOOK_HANDLERS,
            *CONSOLE_ACCOUNT_HANDLERS,
            *console_routers(),
        ],
        template_config=template_config(),
        # `principal`: the caller's key, checked for the scope its route declares (obdal_gateway.auth).
        dependencies={"gw": Provide(_gateway, sync_to_thread=False), "principal": Provide(provide_principal)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=per_route,
        plugins=[tracing_plugin()],
        before_request=name_span,
        state=State({"gateway": gateway}),
        request_max_body_size=gateway.settings.max_upload_bytes + _BODY_SLACK,
        openapi_config=OpenAPIConfig(
            title="Obdal API",
            version="0.1.0",
            description=_DESCRIPTION,
            path=_DOCS,
            render_plugins=[SwaggerDocs()],
            openapi_router=docs_router(_DOCS),
        ),
        logging_config=None,  # logging is configured once per process (obdal_common.logs)
        debug=False,
    )
    for middleware in reversed(around_routing):
        app.asgi_handler = middleware(app.asgi_handler)
    check_declarations(app)
    complete_openapi(app)
    return app
