"""Settings read from the environment, with the defaults devmode runs on out of the box.

DEVMODE_DB=team.db DEVMODE_MAX_UPLOAD_MB=200 python -m devmode datasets list
"""

from __future__ import annotations

import os
from pathlib import Path

# Where everything is kept: one SQLite file. Relative paths resolve against the working directory.
DEFAULT_DB_PATH = "devmode.db"
# Uploads above this size are refused before a byte is written (Streamlit's own cap is set to
# the same value in .streamlit/config.toml).
DEFAULT_MAX_UPLOAD_MB = 1024


def db_path() -> str:
    """The database file devmode uses: ``$DEVMODE_DB``, else ``devmode.db`` in the working directory."""
    return str(Path(os.environ.get("DEVMODE_DB") or DEFAULT_DB_PATH).expanduser().resolve())


def max_upload_bytes() -> int:
    """The upload size limit in bytes, from ``$DEVMODE_MAX_UPLOAD_MB`` (megabytes, may be fractional)."""
    raw = os.environ.get("DEVMODE_MAX_UPLOAD_MB")
    if not raw:
        return DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    try:
        megabytes = float(raw)
    except ValueError:
        raise ValueError(
            f"DEVMODE_MAX_UPLOAD_MB must be a number of megabytes, found {raw!r}. "
            f"Set it to e.g. 200, or unset it for the default of {DEFAULT_MAX_UPLOAD_MB}."
        ) from None
    return int(megabytes * 1024 * 1024)
