"""The operator (admin) token: from the environment, or generated once and kept."""

from __future__ import annotations

import os
from pathlib import Path

from obdal_common.ids import new_secret

__all__ = ["resolve_admin_token"]


def resolve_admin_token(configured: str | None, data_dir: Path) -> tuple[str, bool]:
    """The token to require on /v1/admin, and whether it was just generated.

    An unset ``OBDAL_ADMIN_TOKEN`` is generated on first start and persisted in
    ``<data_dir>/admin_token`` (mode 0600) so restarts keep it.
    """
    if configured:
        return configured, False
    path = data_dir / "admin_token"
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    token = f"obd_admin_{new_secret(40)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, True
