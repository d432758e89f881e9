"""Obdal chat worker: retrieval, prompt assembly and generation through litellm."""

import os

# litellm fetches its price map from the internet at import unless told not to
# (a 5 s stall offline). Set before any module of this package imports litellm.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
