"""Obdal gateway: the public HTTP API (Litestar), its auth, origins and rate limits.

Public surface: ``main.main`` (the ``obdal-gateway`` entry point), ``main.serve`` (what
``obdal up`` runs), ``settings.GatewaySettings``, ``app.create_app``; everything else is
internal to the gateway.
"""
