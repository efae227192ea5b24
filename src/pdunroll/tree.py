"""Parameter trees: an array, or a tuple (or list) of trees.

An operator's ``params`` is a tree: one array for a matrix or a filter bank, ``()`` for a fixed
operator, the tuple of its parts' trees for a :class:`~pdunroll.Composition` or
:class:`~pdunroll.Stack` (nested to any depth). Gradients w.r.t. the parameters have the same
structure. Everything that walks parameters (optimizers, gradient accumulation, checkpoint
files, forward-backward splitting) goes through these five functions.
"""

from __future__ import annotations

from ._array import Array

__all__ = ["add", "axpy", "flatten", "scale", "unflatten"]


def _is_node(tree) -> bool:
    return isinstance(tree, tuple | list)


def flatten(tree) -> list[Array]:
    """The arrays of ``tree``, depth first, as a list (``[]`` for ``()``)."""
    if _is_node(tree):
        return [leaf for part in tree for leaf in flatten(part)]
    return [tree]


def unflatten(like, arrays) -> object:
    """``arrays`` (as many as ``flatten(like)`` has) in the structure of ``like``; nodes come
    back as tuples."""
    it = iter(arrays)

    def build(node):
        return tuple(build(part) for part in node) if _is_node(node) else next(it)

    out = build(like)
    if next(it, None) is not None:
        raise ValueError("unflatten: more arrays than the structure has leaves")
    return out


def _map(fn, *trees):
    if _is_node(trees[0]):
        for t in trees[1:]:
            if not _is_node(t) or len(t) != len(trees[0]):
                raise ValueError("parameter trees of different structure")
        return tuple(_map(fn, *parts) for parts in zip(*trees, strict=True))
    return fn(*trees)


def add(u, v):
    """u + v leaf by leaf."""
    return _map(lambda a, b: a + b, u, v)


def scale(factor, u):
    """factor · u leaf by leaf."""
    return _map(lambda a: factor * a, u)


def axpy(factor, u, acc=None):
    """acc + factor · u leaf by leaf (factor · u when ``acc`` is None)."""
    if acc is None:
        return scale(factor, u)
    return _map(lambda a, b: b + factor * a, u, acc)
