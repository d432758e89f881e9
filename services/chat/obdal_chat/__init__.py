"""Obdal chat worker: retrieval, prompt assembly and generation through litellm.

Public surface: ``main.main`` (the ``obdal-chat`` entry point), ``main.serve`` (what
``obdal up`` runs) and ``settings.ChatSettings``; other services reach it only through
``obdal_common.contract.Chat`` and the chat request stream it declares.
"""

import os

# litellm fetches its price map from the internet at import unless told not to
# (a 5 s stall offline). Set before any module of this package imports litellm.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
