"""Sphinx configuration: MyST markdown pages, numpydoc-style docstrings via napoleon, MathJax
shipped with the pages (no CDN: the docs render offline), and doctests that run the examples of
the pages."""

import inspect
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pdunroll  # noqa: E402

project = "pdunroll"
author = "the pdunroll developers"
copyright = "2026, the pdunroll developers"
release = pdunroll.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax 3 from the sphinx-mathjax-offline package, copied to _static/mathjax/ and loaded
    # from there by a relative path (mathjax_path): formulas render without network
    "sphinx-mathjax-offline",
    "sphinx.ext.doctest",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated"]  # _generated/: included by pages
# numpydoc type fields such as "arrays of shape (batch, n)" are cross-referenced word by word; a
# word that names several attributes (``arrays``) is ambiguous but never meant as a reference
suppress_warnings = ["ref.python"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_type_aliases = {"Array": "Array"}
autodoc_default_options = {"members": True}
autosummary_generate = False

doctest_global_setup = """
import importlib.util

import numpy as np
import pdunroll as pu

# optional backends: examples that need one are skipped (``:skipif:``) where it is not installed
HAVE = {name: importlib.util.find_spec(name) is not None
        for name in ("torch", "jax", "array_api_strict", "skimage")}
"""

html_theme = "furo"
html_title = f"pdunroll {release}"


# modules in reading order (paths below pdunroll); any other module that holds a public name
# follows alphabetically
MODULE_ORDER = [
    "model",
    "operators.base", "operators.dense", "operators.convolution", "operators.filters",
    "operators.linops", "operators.imaging",
    "functions.euclidean", "functions.bregman", "functions.blocks",
    "unroll.methods", "unroll.forward", "unroll.gradient", "unroll.implicit", "unroll.krylov",
    "unroll.splitting",
    "tree",
    "learning.training", "learning.evaluation", "learning.learner", "learning.optimizers",
    "learning.state",
    "learning.checkpoint",
    "data.speech", "data.images", "data.metrics",
    "problems.segmentation", "problems.toy",
]


class PublicAPI(Directive):
    """``pdunroll-api``: one section per module with an autosummary table and the autodoc entry of
    every name in ``pdunroll.__all__``, so the reference follows ``__all__`` without upkeep."""

    def run(self):
        by_module: dict[str, list[str]] = {}
        for name in pdunroll.__all__:
            obj = getattr(pdunroll, name)
            if inspect.ismodule(obj):  # a public submodule: documented as a whole
                by_module.setdefault(obj.__name__, [])
                continue
            module = getattr(obj, "__module__", None)
            if not (isinstance(module, str) and module.startswith("pdunroll.")):
                module = _defining_module(name)
            by_module.setdefault(module, []).append(name)
        rank = {f"pdunroll.{m}": i for i, m in enumerate(MODULE_ORDER)}
        lines = [".. currentmodule:: pdunroll", ""]
        for module in sorted(by_module, key=lambda m: (rank.get(m, len(rank)), m)):
            names = by_module[module]
            lines += [module, "-" * len(module), ""]
            if not names:  # its members are reached as pdunroll.<module>.<name>
                lines += [f".. automodule:: {module}", "   :members:", ""]
                continue
            lines += [f".. automodule:: {module}", "   :no-members:", "",
                      ".. currentmodule:: pdunroll", "",
                      ".. autosummary::", "   :nosignatures:", ""]
            lines += [f"   {name}" for name in names] + [""]
            for name in names:
                obj = getattr(pdunroll, name)
                kind = ("autoclass" if inspect.isclass(obj)
                        else "autofunction" if callable(obj) else "autodata")
                lines += [f".. {kind}:: {name}", ""]
        content = StringList(lines, source="pdunroll.__all__")
        node = _container()
        nested_parse_with_titles(self.state, content, node)
        return node.children


def _defining_module(name: str) -> str:
    """The submodule of a constant such as ``SOLVERS``, which has no ``__module__``: the one
    whose ``__all__`` lists ``name``, else the one that holds the same object under that name."""
    submodules = sorted((module_name, module) for module_name, module in sys.modules.items()
                        if module_name.startswith("pdunroll.") and module is not None)
    for module_name, module in submodules:
        if name in getattr(module, "__all__", ()):
            return module_name
    value = getattr(pdunroll, name)
    for module_name, module in submodules:
        if getattr(module, name, None) is value:
            return module_name
    return "pdunroll"


def _container():
    return nodes.section()


# Docstrings write plain-text math: shapes as (batch, *in_shape), absolute values as |w|. In
# reStructuredText a lone * opens emphasis and |w| is a substitution, so both are escaped
# (outside inline literals) before the docstrings are parsed.
_STARRED_SHAPE = re.compile(r"(?<=[(\[,\s])\*(?=[\w.]+[),\]])")
_LITERAL = re.compile(r"(``.*?``)")


def _escape(text: str) -> str:
    return _STARRED_SHAPE.sub(r"\\*", text).replace("|", r"\|")


def escape_plain_math(app, what, name, obj, options, lines):
    """Escape ``*`` before shape names and every ``|`` outside literal blocks and inline
    literals (runs after :func:`literal_displays`)."""
    literal_above = None  # text indent of the "::" line whose literal block we are in
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal_above is not None and (not line.strip() or indent > literal_above):
            continue
        literal_above = _text_indent(line) if line.rstrip().endswith("::") else None
        parts = _LITERAL.split(line)
        lines[i] = "".join(p if p.startswith("``") else _escape(p) for p in parts)


_BULLET = re.compile(r"([*+-]|\d+\.|#\.) ")


def _text_indent(line: str) -> int:
    """Column where the text of ``line`` starts (after a list marker, if any)."""
    stripped = line.lstrip()
    marker = _BULLET.match(stripped)
    return len(line) - len(stripped) + (marker.end() if marker else 0)


def literal_displays(app, what, name, obj, options, lines):
    """Docstrings set formulas apart as indented blocks after a blank line. In reStructuredText
    such a block is a quote whose lines are reflowed (or an error where its indentation varies);
    render it as a literal block instead, keeping the alignment. Blocks after ``::``, directives
    and fields are left alone."""
    out: list[str] = []
    previous = ""  # the last non-blank line before the current one
    i = 0
    while i < len(lines):
        line = lines[i]
        base = _text_indent(previous)
        starts_block = (line.strip() and out and not out[-1].strip() and previous
                        and len(line) - len(line.lstrip()) > base)
        if starts_block:
            block = []
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > base):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
                i -= 1
            stripped = previous.strip()
            if not (stripped.endswith("::") or stripped.startswith((":", ".."))):
                out += [" " * base + "::", ""]
            out += block
            previous = block[-1]
            continue
        out.append(line)
        if line.strip():
            previous = line
        i += 1
    lines[:] = out


def drop_builtin_docstrings(app, what, name, obj, options, lines):
    """Constants such as ``SOLVERS = ("gmres", "neumann")`` would show the docstring of
    ``tuple``."""
    if what == "data" and getattr(obj, "__doc__", None) is getattr(type(obj), "__doc__", 0):
        lines.clear()


def resolve_public_names(app, env, node, contnode):
    """Docstrings of submodules name public objects by their short or module path
    (``estimate_norm``, ``pdunroll.unroll.krylov.SolveInfo``); link them to ``pdunroll.<name>``."""
    if node.get("refdomain") != "py":
        return None
    name = node["reftarget"].rsplit(".", 1)[-1]
    if name not in pdunroll.__all__ or node["reftarget"] == f"pdunroll.{name}":
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                             f"pdunroll.{name}", node, contnode)


def setup(app):
    app.add_directive("pdunroll-api", PublicAPI)
    # in this order: literal blocks first, so that escaping can leave them alone
    app.connect("autodoc-process-docstring", drop_builtin_docstrings)
    app.connect("autodoc-process-docstring", literal_displays)
    app.connect("autodoc-process-docstring", escape_plain_math)
    app.connect("missing-reference", resolve_public_names)
