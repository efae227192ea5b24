"""Output folders of training runs: a lock so that one run (or resume) at a time writes into a
folder, and numbered folders so that a second run never overwrites the first.

The lock is ``FOLDER/.lock`` holding the process id and host of its owner, with an advisory
``fcntl.flock`` on it (POSIX): the kernel releases it when the owner dies, even by SIGKILL, so a
lock file left by a dead process is recognised as stale and taken over. Without ``fcntl``
(Windows) the recorded process id is checked instead.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["FolderInUse", "FolderLock", "latest_folder", "numbered_folder"]

LOCK_NAME = ".lock"


class FolderInUse(RuntimeError):
    """Another live process holds the lock of the folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class FolderLock:
    """``with FolderLock(folder) as lock:`` holds the folder's lock; ``lock.stale`` describes a
    stale lock of a dead process that was taken over (``None`` if there was none)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.stale: str | None = None
        self._fh = None

    def _owner(self, text: str) -> dict:
        try:
            owner = json.loads(text)
            return owner if isinstance(owner, dict) else {}
        except ValueError:
            return {}

    def acquire(self) -> FolderLock:
        while True:
            fh = open(self.path, "a+")  # noqa: SIM115 (held until release)
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.seek(0)
                    owner = self._owner(fh.read())
                    fh.close()
                    raise FolderInUse(self._busy(owner)) from None
                # the file may have been released and removed between open and flock
                if not self.path.exists() or \
                        os.stat(self.path).st_ino != os.fstat(fh.fileno()).st_ino:
                    fh.close()
                    continue
            fh.seek(0)
            owner = self._owner(fh.read())
            if owner.get("pid") not in (None, os.getpid()):
                same_host = owner.get("host") == socket.gethostname()
                if fcntl is None and same_host and _alive(int(owner["pid"])):
                    fh.close()
                    raise FolderInUse(self._busy(owner))
                self.stale = (f"took over the stale lock {self.path} of process "
                              f"{owner['pid']} on {owner.get('host', '?')}, which is no longer "
                              "running")
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
            fh.flush()
            self._fh = fh
            return self

    def check_free(self) -> None:
        """Raise :class:`FolderInUse` if a live process holds the lock (nothing is written)."""
        if not self.path.is_file():
            return
        with open(self.path) as fh:
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    raise FolderInUse(self._busy(self._owner(fh.read()))) from None
            owner = self._owner(fh.read())
        if owner.get("host") == socket.gethostname() and "pid" in owner and \
                owner["pid"] != os.getpid() and _alive(int(owner["pid"])):
            raise FolderInUse(self._busy(owner))

    def _busy(self, owner: dict) -> str:
        who = (f"process {owner['pid']} on {owner.get('host', '?')} (since "
               f"{owner.get('since', '?')})" if "pid" in owner else "another process")
        return (f"{self.folder} is in use by {who}: wait for it to finish or choose another "
                f"--out (if that process is gone, remove {self.path})")

    def release(self) -> None:
        if self._fh is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self._fh.close()
            self._fh = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holds_run(folder: Path) -> bool:
    return folder.exists() and any(folder.iterdir())


def numbered_folder(base) -> Path:
    """``base`` if it does not exist or is empty, else the first of ``base-2``, ``base-3``, ...
    that does not exist or is empty: a new run never lands in an earlier run's folder."""
    base = Path(base)
    if not _holds_run(base):
        return base
    k = 2
    while _holds_run(base.with_name(f"{base.name}-{k}")):
        k += 1
    return base.with_name(f"{base.name}-{k}")


def latest_folder(base) -> Path | None:
    """The newest of ``base``, ``base-2``, ... holding a checkpoint (what ``--resume`` without
    ``--out`` continues), or ``None``."""
    base = Path(base)
    found, k = None, 1
    while True:
        folder = base if k == 1 else base.with_name(f"{base.name}-{k}")
        if (folder / "checkpoint.npz").is_file():
            found = folder
        elif not folder.exists() and k > 1:
            return found
        k += 1
