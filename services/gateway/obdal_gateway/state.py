"""What the gateway's handlers share: connections, registries and settings."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore
from redis.asyncio import Redis

from obdal_common.contract import Chat, Ingest, Metering, Webhooks
from obdal_gateway.apps import AppRegistry
from obdal_gateway.audit import AuditLog
from obdal_gateway.console_sessions import ConsoleSessions
from obdal_gateway.keys import KeyRegistry
from obdal_gateway.operators import OperatorRegistry
from obdal_gateway.proof_of_work import ProofOfWork
from obdal_gateway.ratelimit import RateLimiter
from obdal_gateway.relay import ChatRelay
from obdal_gateway.session_streams import SessionStreams
from obdal_gateway.settings import GatewaySettings
from obdal_gateway.signin_throttle import SignInThrottle

__all__ = ["Gateway"]


@dataclass(frozen=True, slots=True)
class Gateway:
    settings: GatewaySettings
    admin_token: str
    nc: NATS
    js: JetStreamContext
    redis: Redis
    keys: KeyRegistry
    apps: AppRegistry
    # Only to stage an upload's bytes for ingest (obdal_common.contract.ingest.stage).
    objects: ObjectStore
    relay: ChatRelay
    audit: AuditLog
    # The other services, through their contracts (typed clients over NATS).
    metering: Metering
    chat: Chat
    ingest: Ingest
    webhooks: Webhooks
    limiter: RateLimiter
    # Publishable keys that ask for it: a solved challenge per question.
    pow: ProofOfWork
    # The console's operators, their signed-in browsers and the guard against password guessing.
    operators: OperatorRegistry
    console_sessions: ConsoleSessions
    signin_throttle: SignInThrottle
    # Open event streams of each session on this gateway (``GET /v1/sessions/{id}/events``).
    session_streams: SessionStreams
