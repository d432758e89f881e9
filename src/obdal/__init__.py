"""Obdal's command line (``obdal``) and the embedded stack ``obdal up`` starts.

Public surface: ``cli.main`` (the ``obdal`` entry point), ``stack.run_stack`` and
``servers`` (the embedded NATS, Redis/Valkey and SecantusDB child processes, also used
by the tests).
"""
