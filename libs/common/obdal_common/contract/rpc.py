"""An RPC declared once: its subject, request and reply types, timeout and the errors it may answer.

From the one declaration come both sides::

    class Metering(Contract):
        service = "metering"
        usage = Rpc("obdal.metering.usage", UsageQuery, UsageReport, timeout=5.0, errors=(BadRequest,))

    report = await Metering(bus).usage(query)           # the caller: typed, errors re-raised
    bindings = Bindings(Metering).bind(Metering.usage, store.usage)  # the owner: a handler per RPC
    await bindings.serve(bus)

:class:`Bindings` refuses to start without a handler for every RPC of the contract,
so a declaration cannot be forgotten by its owner. A handler's :class:`ObdalError`
travels as ``{"code","message","status"}`` with the error header and is raised again,
as the same class, in the caller; anything else is logged and answered
``internal_error``, so a caller never waits for a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar, overload

import msgspec
from opentelemetry import trace

from obdal_common.contract.bus import Bus, Reply, Subscription
from obdal_common.errors import BadRequest, DependencyUnavailable, ObdalError, error_for_code
from obdal_common.schemas import ErrorReply, decode, encode
from obdal_common.telemetry import extract_context, inject_headers

__all__ = ["ERROR_HEADER", "Bindings", "BoundRpc", "Contract", "Rpc"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

ERROR_HEADER = "Obdal-Error"

Req = TypeVar("Req")
Rep = TypeVar("Rep")

# What any RPC can answer whatever it declares: its owner not running or too slow (raised by
# the bus on the caller's side), a malformed request, and a bug.
_ALWAYS: tuple[type[ObdalError], ...] = (DependencyUnavailable, BadRequest, ObdalError)


class Rpc(Generic[Req, Rep]):
    """One request/reply of a service's contract; read on a :class:`Contract` instance it is
    that client's typed call."""

    def __init__(
        self,
        subject: str,
        request: type[Req],
        reply: type[Rep],
        *,
        timeout: float,
        errors: tuple[type[ObdalError], ...] = (),
    ) -> None:
        self.subject = subject
        self.request = request
        self.reply = reply
        self.timeout = timeout
        self.errors = errors
        self.name = ""
        self.service = ""

    def __set_name__(self, owner: type[Contract], name: str) -> None:
        self.name = name
        self.service = owner.service

    def __repr__(self) -> str:
        return f"<Rpc {self.service}.{self.name} {self.subject}>"

    @overload
    def __get__(self, instance: None, owner: type[Contract]) -> Self: ...
    @overload
    def __get__(self, instance: Contract, owner: type[Contract]) -> BoundRpc[Req, Rep]: ...
    def __get__(self, instance: Contract | None, owner: type[Contract]) -> Self | BoundRpc[Req, Rep]:
        if instance is None:
            return self
        return BoundRpc(self, instance)

    def may_answer(self, error: ObdalError) -> bool:
        """Whether ``error`` is one this RPC declares (or any RPC can answer)."""
        return isinstance(error, self.errors) or type(error) in _ALWAYS

    async def call(self, bus: Bus, request: Req, *, timeout: float | None = None) -> Rep:  # noqa: ASYNC109
        """Send ``request`` and decode the reply, raising the owner's error as its own class."""
        data, headers = await bus.request(
            self.subject,
            encode(request),
            headers=inject_headers(),
            timeout=self.timeout if timeout is None else timeout,
            service=self.service,
        )
        if headers.get(ERROR_HEADER):
            err = decode(data, ErrorReply)
            raise error_for_code(err.status, err.code, err.message)
        return decode(data, self.reply)

    async def answer(
        self, handler: Callable[[Req], Awaitable[Rep]], data: bytes, headers: Mapping[str, str]
    ) -> Reply:
        """The reply of ``handler`` to one request, as the bus carries it."""
        with tracer.start_as_current_span(f"{self.service}.{self.name}", context=extract_context(headers)):
            try:
                request = decode(data, self.request)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return _error(
                    BadRequest(f"malformed {self.service}.{self.name} request: {exc}", code="bad_message")
                )
            try:
                return encode(await handler(request)), {}
            except ObdalError as exc:
                if not self.may_answer(exc):
                    log.warning("%r answered %s, which it does not declare", self, type(exc).__name__)
                return _error(exc)
            except Exception:
                log.exception("%r failed", self)
                return _error(ObdalError("internal error"))


def _error(error: ObdalError) -> Reply:
    body = ErrorReply(code=error.code, message=error.message, status=error.status)
    return encode(body), {ERROR_HEADER: "1"}


class BoundRpc(Generic[Req, Rep]):
    """An RPC as one client calls it: ``await client.usage(query)``."""

    __slots__ = ("_client", "_rpc")

    def __init__(self, rpc: Rpc[Req, Rep], client: Contract) -> None:
        self._rpc = rpc
        self._client = client

    async def __call__(self, request: Req, *, timeout: float | None = None) -> Rep:  # noqa: ASYNC109
        """``timeout`` for this call only (e.g. a wait the request itself asks for)."""
        return await self._rpc.call(self._client.bus, request, timeout=timeout)


class Contract:
    """A service's declared RPCs; an instance is that service's typed client over one bus."""

    service: ClassVar[str]

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    @classmethod
    def rpcs(cls) -> list[Rpc[Any, Any]]:
        """Every RPC of the contract, in declaration order."""
        return [v for klass in reversed(cls.__mro__) for v in vars(klass).values() if isinstance(v, Rpc)]


class Bindings:
    """The owner's side of a contract: one handler per RPC, all answered on one bus.

    :meth:`bind` checks each handler's types against its declaration (for mypy);
    :meth:`serve` refuses to start while any RPC of the contract has none.
    """

    def __init__(
        self,
        contract: type[Contract],
        *,
        lower_errors: Mapping[type[Exception], Callable[[], ObdalError]] | None = None,
    ) -> None:
        """``lower_errors``: what a lower library's exception (pymongo's, nats-py's) means, mapped
        here once for every handler, so handlers raise them unmapped."""
        self._contract = contract
        self._lower = dict(lower_errors or {})
        self._handlers: dict[Rpc[Any, Any], Callable[[Any], Awaitable[Any]]] = {}
        self._subscriptions: list[Subscription] = []

    def bind(self, rpc: Rpc[Req, Rep], handler: Callable[[Req], Awaitable[Rep]]) -> Self:
        if rpc not in self._contract.rpcs():
            raise TypeError(f"{rpc!r} is not an RPC of {self._contract.__name__}")
        self._handlers[rpc] = handler
        return self

    async def serve(self, bus: Bus, *, concurrency: int = 64) -> None:
        """Subscribe every handler (queue group: the service name, so replicas share the work)."""
        missing = [rpc.name for rpc in self._contract.rpcs() if rpc not in self._handlers]
        if missing:
            raise TypeError(f"{self._contract.__name__} has no handler for {', '.join(missing)}")
        for rpc, handler in self._handlers.items():

            async def answer(
                data: bytes, headers: Mapping[str, str], rpc: Rpc[Any, Any] = rpc, handler: Any = handler
            ) -> Reply:
                return await rpc.answer(self._mapped(handler), data, headers)

            self._subscriptions.append(
                await bus.serve(rpc.subject, answer, queue=self._contract.service, concurrency=concurrency)
            )

    def _mapped(self, handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        if not self._lower:
            return handler
        lower = tuple(self._lower)

        async def mapped(request: Any) -> Any:
            try:
                return await handler(request)
            except lower as exc:
                error = next(make() for kind, make in self._lower.items() if isinstance(exc, kind))
                log.warning("%s: %r", error.code, exc)
                raise error from None

        return mapped

    async def stop(self) -> None:
        """Stop answering (requests in flight finish)."""
        for sub in self._subscriptions:
            await sub.unsubscribe()
        self._subscriptions.clear()
