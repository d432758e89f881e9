"""Obdal metering: usage, turns, sessions, audit and retention in MongoDB.

Public surface: ``main.main`` (the ``obdal-metering`` entry point), ``main.serve`` (what
``obdal up`` runs) and ``settings.MeteringSettings``; other services reach it only
through ``obdal_common.contract.Metering`` and the events stream.
"""
