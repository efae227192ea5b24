"""The layout the architecture page draws: each part imports only parts below it, and no module
imports itself back through others (no cycles), inside a subpackage either."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "pdunroll"
# bottom to top; a part may import the parts of lower layers only (and its own modules)
LAYERS = {"_array": 0, "tree": 1, "registry": 1, "operators": 2, "functions": 2, "data": 2,
          "model": 3, "unroll": 4, "inverse": 4, "tasks": 5, "torch": 5, "jax": 5, "audit": 5,
          "checks": 5, "learning": 6, "problems": 6, "cli": 7, "__init__": 8}


MODULES = {".".join(p.relative_to(PKG).with_suffix("").parts) for p in PKG.rglob("*.py")}


def _module(path: Path) -> str:
    """Dotted name inside the package; a package is named by its folder ("" for pdunroll)."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Package-internal modules imported by ``path`` (relative imports resolved)."""
    here = [p for p in _module(path).split(".") if p]
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = base + (node.module.split(".") if node.module else [])
            if node.module is None:  # from . import tree (a module) or a name of the package
                for a in node.names:
                    name = ".".join(base + [a.name])
                    out.add(name if name in MODULES or f"{name}.__init__" in MODULES
                            else ".".join(base))
            else:
                out.add(".".join(target))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pdunroll."):
            out.add(node.module.removeprefix("pdunroll."))
    return out


GRAPH = {_module(p): _imports(p) for p in PKG.rglob("*.py")}


def _part(module: str) -> str:
    return module.split(".")[0] if module else "__init__"  # "": the package's own __init__


def test_every_part_has_a_layer():
    assert {_part(m) for m in GRAPH} <= set(LAYERS), {_part(m) for m in GRAPH} - set(LAYERS)


def test_nothing_imports_upward_or_sideways():
    wrong = sorted((m, t) for m, targets in GRAPH.items() for t in targets
                   if _part(t) != _part(m) and LAYERS[_part(t)] >= LAYERS[_part(m)])
    assert not wrong, wrong


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(m, trail):
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(trail + [m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for t in GRAPH.get(m, ()):
            # a subpackage's __init__ re-exports its modules; importing it means importing them
            if t in GRAPH and t != m:
                visit(t, trail + [m])
        state[m] = 2

    for m in GRAPH:
        visit(m, [])


def test_only_the_step_rule_makes_step_sizes():
    """σ = ω·margin/‖K‖ and τ = margin/(ω‖K‖) are written in model.py (StepRule) only: no
    other module types the rule's constant or divides by ω itself."""
    import re

    rule = re.compile(r"0\.99\s*/\s*\(?\s*[A-Za-z_]|[A-Za-z_)]\s*\*\s*0\.99|/\s*\(\s*omega\s*\*")
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name != "model.py" and rule.search(p.read_text())]
    assert not offenders, f"step sizes computed outside StepRule: {offenders}"


METHOD_TYPES = {"Full", "Truncated", "Asymptotic", "Implicit"}


def _names(node) -> set[str]:
    """The class names in an isinstance's second argument (a name, A | B, a tuple)."""
    return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node)
            if isinstance(n, ast.Name | ast.Attribute)}


def test_only_the_methods_dispatch_on_their_type():
    """Each gradient method runs its own forward plan and reverse pass (unroll/methods.py): no
    other module asks isinstance(..., Full | Truncated | Asymptotic | Implicit)."""
    offenders = []
    for p in PKG.rglob("*.py"):
        if p.relative_to(PKG).as_posix() == "unroll/methods.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "isinstance" and len(node.args) == 2
                    and _names(node.args[1]) & METHOD_TYPES):
                offenders.append(f"{p.relative_to(PKG)}:{node.lineno}")
    assert not offenders, f"dispatch on gradient method types outside methods.py: {offenders}"
