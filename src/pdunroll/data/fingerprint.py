"""What a run was trained on: a data fingerprint (the files with their SHA-256 digests, or the
synthetic generator's settings, plus the framing), stored in checkpoints and learned operators,
and the differences between two fingerprints in words."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fingerprint_difference", "file_digests"]


def file_digests(paths, root) -> dict[str, str]:
    """``{path relative to root: SHA-256 hex digest}`` of each file (errors name the file);
    a file reached through a symbolic link inside root (e.g. ``dev/`` linked to another
    folder) is named by its path through the link."""
    root = Path(root)
    out = {}
    for path in paths:
        path = Path(path)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        except OSError as err:
            raise OSError(err.errno, f"cannot read {path}: {err.strerror}", str(path)) from err
        out[_name_in(path, root)] = digest.hexdigest()
    return out


def _name_in(path: Path, root: Path) -> str:
    """``path`` relative to ``root``: through the resolved paths, or where a symbolic link
    inside root leads elsewhere (``dev/`` linked to another folder) through the nearest
    folder above ``path`` that is root (however either is spelt: a link above both, e.g. a
    linked ``runs/``, may appear in one and not the other); else ``path`` itself."""
    real_root = root.resolve()
    try:
        return path.resolve().relative_to(real_root).as_posix()
    except ValueError:
        absolute = Path(os.path.abspath(path))
        for folder in absolute.parents:
            if folder.resolve() == real_root:
                return absolute.relative_to(folder).as_posix()
        return str(path)


def _names(names, limit=3) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more"
                                       if len(names) > limit else "")


def fingerprint_difference(saved: dict | None, now: dict | None) -> list[str]:
    """What differs between two fingerprints, one phrase per difference (empty: the same data).
    ``files`` and ``test_files`` entries (name → digest) are compared file by file; a saved
    fingerprint without ``test_files`` (an older pdunroll's) does not compare the test set."""
    saved, now = saved or {}, now or {}
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if a == b or (key == "test_files" and a is None):
            continue
        if key in ("files", "test_files") and isinstance(a, dict) and isinstance(b, dict):
            what = "test set" if key == "test_files" else "saved data"
            gone, new = set(a) - set(b), set(b) - set(a)
            changed = {k for k in set(a) & set(b) if a[k] != b[k]}
            if gone:
                out.append(f"{len(gone)} file(s) of the {what} missing now: {_names(gone)}")
            if new:
                out.append(f"{len(new)} file(s) not in the {what}: {_names(new)}")
            if changed:
                of = " of the test set" if key == "test_files" else ""
                out.append(f"{len(changed)} file(s){of} with other contents (SHA-256): "
                           f"{_names(changed)}")
        else:
            out.append(f"{key}: saved {a!r}, now {b!r}")
    return out
