"""Files that other processes read while we rewrite them: replaced atomically, with their mode."""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, text: str, *, mode: int) -> None:
    """Replace ``path`` atomically: a reader (the broker on SIGHUP) sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask, and an old tmp keeps its own
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    finally:
        if fd >= 0:
            os.close(fd)
    tmp.replace(path)
