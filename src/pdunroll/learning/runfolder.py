"""Output folders of training runs: a lock so that one run (or resume) at a time writes into a
folder, numbered folders so that a second run never overwrites the first, the folder's life
while a run writes into it (:class:`RunFolder`: created, locked, ``train.log``, removed again if
no step was made) and SIGTERM / SIGHUP handled as Ctrl-C (:class:`StopSignals`).

The lock is ``FOLDER/.lock`` holding the process id and host of its owner, with an advisory
``fcntl.flock`` on it (POSIX): the kernel releases it when the owner dies, even by SIGKILL, so a
lock file left by a dead process is recognised as stale and taken over. Without ``fcntl``
(Windows) the recorded process id is checked instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["FolderInUse", "FolderLock", "RunFolder", "StopSignals", "latest_folder",
           "numbered_folder", "output_folder", "say"]

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


def output_folder(out, base, *, resume: bool) -> Path:
    """``out``, or the default numbered folder under ``base`` (``resume``: the newest one with a
    checkpoint). Checks before any work: a folder (or none yet), a new run does not overwrite
    the checkpoint of an earlier one, a resume has one, no live run holds it."""
    if out is None:
        out = (latest_folder(base) or Path(base)) if resume else numbered_folder(base)
    out = Path(out)
    checkpoint = out / "checkpoint.npz"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    FolderLock(out).check_free()  # a run in progress is named before anything else
    if resume and not checkpoint.is_file():
        raise ValueError(f"--resume: there is no {checkpoint} to continue")
    if not resume and checkpoint.exists():
        raise ValueError(f"--out {out} holds the checkpoint of an earlier run: continue it "
                         f"with --resume, or choose another --out (or delete {checkpoint})")
    return out


def say(text: str) -> None:
    """Print a line and write it to the run's log file (not twice to the console)."""
    print(text, flush=True)
    logging.getLogger("pdunroll.run").info(text, extra={"printed": True})


def _console_handler():
    """A logging handler printing to stdout through ``tqdm.write`` (above a progress bar)."""
    from tqdm.auto import tqdm

    class Console(logging.Handler):
        def emit(self, record):
            tqdm.write(self.format(record), file=sys.stdout)

    return Console()


class RunFolder:
    """The output folder while a run writes into it: created and checked writable, locked
    against a second run, with the log file ``train.log`` (epoch summaries of the ``pdunroll``
    logger; on the console too unless ``quiet``). A run that stops before its first step
    (no checkpoint) leaves nothing behind: what it created is removed."""

    def __init__(self, out: Path, *, quiet: bool):
        self.out, self.quiet, self.stale = Path(out), quiet, None
        self.created: list[Path] = []
        self.handlers: list = []

    def __enter__(self):
        from .checkpoint import check_writable

        missing = []
        for p in (self.out, *self.out.parents):
            if p.exists():
                break
            missing.append(p)
        try:
            self.out.mkdir(parents=True, exist_ok=True)  # --out a/b/run: the whole chain
            check_writable(self.out / "checkpoint.npz")
        except OSError as err:
            self._remove(missing)
            raise OSError(err.errno, f"--out {self.out}: {err.strerror}", str(self.out)) from err
        self.created = missing
        self.lock = FolderLock(self.out)
        try:
            self.lock.acquire()
        except Exception:
            self._remove(self.created)
            raise
        self.stale = self.lock.stale
        self.log_path = self.out / "train.log"
        self.new_log = not self.log_path.exists()
        logger = logging.getLogger("pdunroll")
        self.level = logger.level
        try:
            file_handler = logging.FileHandler(self.log_path, encoding="utf-8")
        except OSError as err:
            self.__exit__()
            raise OSError(err.errno, f"cannot write {self.log_path}: {err.strerror}",
                          str(self.log_path)) from err
        logger.setLevel(logging.INFO)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.handlers = [file_handler]
        if not self.quiet:
            console = _console_handler()
            console.addFilter(lambda record: not getattr(record, "printed", False))
            self.handlers.append(console)
        for handler in self.handlers:
            logger.addHandler(handler)
        return self

    def __exit__(self, *exc):
        logger = logging.getLogger("pdunroll")
        logger.setLevel(self.level)
        for handler in self.handlers:
            logger.removeHandler(handler)
            handler.close()
        self.lock.release()
        if not (self.out / "checkpoint.npz").exists():  # no step made: leave nothing behind
            if self.new_log:
                self.log_path.unlink(missing_ok=True)
            self._remove(self.created)

    @staticmethod
    def _remove(folders) -> None:
        for folder in folders:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                return


class StopSignals:
    """While training, SIGTERM (``kill``, a batch scheduler) and SIGHUP (a closed terminal) act
    as Ctrl-C: the run saves its checkpoint instead of dying with the work since the last
    epoch. ``received``: the signal that stopped the run, if any."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                    if hasattr(signal, name))

    def __init__(self):
        self.received, self.previous = None, {}

    def _raise(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt

    def __enter__(self):
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._raise)
        except ValueError:  # not the main thread: signals cannot be handled here
            pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
