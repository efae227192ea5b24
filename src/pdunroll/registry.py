"""How model parts describe themselves: the registry of saveable operators and functions.

Every :class:`~pdunroll.LinearOperator` and :class:`~pdunroll.Function` that can be saved is
registered under a stable type name with the class decorator :func:`saveable`, and owns its
description:

* ``part.to_config(writer)`` → a dict of JSON values (its settings); its arrays go through
  ``writer.array(a)`` (which returns a reference to put in the dict) and its sub-parts (the
  operators of a :class:`~pdunroll.Stack`, the base of a :class:`~pdunroll.LinearTerm`) through
  ``writer.part(p)``;
* ``Class.from_config(config, reader)`` rebuilds it, taking arrays back with
  ``reader.array(ref)`` (in the namespace and on the device being loaded to), sub-parts with
  ``reader.part(config)`` and dtypes with ``reader.dtype(name)``.

:func:`describe` adds the ``"type"`` entry; :func:`rebuild` looks it up. A user's own operator or
function joins by the same decorator (docs, "Saving and applying models")::

    @pu.saveable
    class MyOperator(pu.LinearOperator):
        def to_config(self, writer): return {"weights": writer.array(self.params)}
        @classmethod
        def from_config(cls, config, reader): return cls(reader.array(config["weights"]))

Functions whose settings are their numbers (``vars(f)``, e.g. ``L1Norm(weight)``) need only the
decorator: the base class's ``to_config`` / ``from_config`` write and read them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Reader", "Writer", "describe", "rebuild", "registered", "saveable"]

_CLASSES: dict[str, type] = {}  # type name → class
_NAMES: dict[type, str] = {}  # class → type name

_HOW = ("decorate the class with @pdunroll.saveable; it describes itself by to_config(self, "
        "writer) -> dict and a classmethod from_config(cls, config, reader), which a Function "
        "whose attributes are numbers inherits (docs, 'Saving and applying models')")


def saveable(cls: type | None = None, *, name: str | None = None):
    """Class decorator: register ``cls`` as saveable under ``name`` (default: the class name
    for pdunroll's own classes, ``module.QualName`` for others). Use as ``@saveable`` or
    ``@saveable(name="...")``; a name taken by another class is refused."""

    def register(klass: type) -> type:
        if not isinstance(klass, type):
            raise TypeError(f"saveable decorates a class, got {type(klass).__name__}")
        own = klass.__module__.split(".")[0] == "pdunroll"
        key = name if name is not None else (
            klass.__name__ if own else f"{klass.__module__}.{klass.__qualname__}")
        if not isinstance(key, str) or not key:
            raise ValueError(f"name must be a non-empty string, got {key!r}")
        other = _CLASSES.get(key)
        if other is not None and (other.__module__, other.__qualname__) != (
                klass.__module__, klass.__qualname__):
            raise ValueError(f"the type name {key!r} is taken by {other.__module__}."
                             f"{other.__qualname__}: give {klass.__qualname__} another name=")
        _CLASSES[key] = klass
        _NAMES[klass] = key
        return klass

    return register if cls is None else register(cls)


def registered() -> dict[str, type]:
    """The saveable classes by type name (a copy)."""
    return dict(_CLASSES)


class Writer:
    """Collects the arrays of the parts being described; ``arrays`` maps the references that
    :meth:`array` hands out to the arrays (of any backend)."""

    def __init__(self):
        self.arrays: dict[str, Any] = {}

    def array(self, a) -> str:
        """Keep array ``a``; return its reference (a string) for the description."""
        key = f"a{len(self.arrays)}"
        self.arrays[key] = a
        return key

    def part(self, obj) -> dict:
        """The description of a sub-part (an operator or function), with its type."""
        return describe(obj, self)


class Reader:
    """Hands arrays back to :meth:`from_config`: ``arrays`` maps references to stored arrays
    and ``convert(stored)`` makes one an array of namespace ``xp`` on ``device``."""

    def __init__(self, arrays: dict[str, Any], convert: Callable[[Any], Any], xp, device=None):
        self.arrays, self.convert, self.xp, self.device = arrays, convert, xp, device

    def array(self, ref: str):
        if ref not in self.arrays:
            raise ValueError(f"the description refers to an array {ref!r} that the file does "
                             "not hold: the file is damaged")
        return self.convert(self.arrays[ref])

    def dtype(self, name: str):
        """The dtype called ``name`` (e.g. "float32") in the namespace being loaded to."""
        dtype = getattr(self.xp, str(name).split(".")[-1], None)
        if dtype is None:
            raise ValueError(f"unknown dtype {name!r} in the description")
        return dtype

    def part(self, config: dict):
        return rebuild(config, self)


def describe(obj, writer: Writer) -> dict:
    """``{"type": name, **obj.to_config(writer)}``; a TypeError naming the class and how to
    register it if ``type(obj)`` is not registered (a subclass of a registered class is not:
    it may hold more than its parent describes)."""
    cls = type(obj)
    key = _NAMES.get(cls)
    if key is None:
        raise TypeError(f"cannot save {cls.__qualname__}: it does not describe "
                        f"itself; to save it, {_HOW}")
    config = obj.to_config(writer)
    if not isinstance(config, dict) or "type" in config:
        raise TypeError(f"{cls.__qualname__}.to_config must return a dict without a 'type' "
                        f"entry, got {config!r}")
    return {"type": key, **config}


def rebuild(config: dict, reader: Reader):
    """The part a :func:`describe` dict describes, arrays from ``reader``."""
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise ValueError(f"a part's description must be a dict with a 'type', got {config!r}")
    cls = _CLASSES.get(config["type"])
    if cls is None:
        raise ValueError(f"unknown type {config['type']!r}: import the module that defines it "
                         f"(registered with @pdunroll.saveable) before loading; known types: "
                         f"{', '.join(sorted(_CLASSES))}")
    return cls.from_config({k: v for k, v in config.items() if k != "type"}, reader)
