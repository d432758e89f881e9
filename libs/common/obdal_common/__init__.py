"""Obdal's shared contract and runtime, light enough for every service (no numpy, no Qdrant).

Public surface, by module: ``contract`` (every service's RPCs, typed clients, bindings,
the NATS and in-memory buses), ``schemas`` (every message on the bus), ``subjects``
(stream, event and bucket names), ``errors`` (the one hierarchy), ``settings``
(``ObdalSettings``, ``load_settings``), ``runner`` (running services as a process),
``messaging`` (connecting, topology, events, pull consumers), ``health``, ``telemetry``,
``metrics``, ``logs``, and the small shared rules ``ids``, ``cursors``, ``sessions``,
``budgets``, ``formats``, ``kvmirror``, ``redis_client``, ``processes``.
"""
