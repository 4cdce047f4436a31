"""The package's stages import downwards only (docs/architecture.md draws the layout).

Each subpackage of acol_eval has a rank; a module may import from its own subpackage
and from any of a lower rank, never from one of a higher rank. Every import counts,
those inside functions (the lazy ones that keep torch out of score) included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "acol_eval"

RANKS = {  # lowest first; docs/architecture.md has one table per subpackage
    "util": 0,
    "data": 1,
    "models": 2,
    "maps": 3,
    "metrics": 4,
    "report": 5,
    "scoring": 6,
    "comparison": 7,
    "training": 8,
    "api": 9,  # acol_eval/api.py, one module: the Python API calls every job
}
TOP_MODULES = {"api"}  # ranked modules directly under acol_eval/, not subpackages


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imported(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every acol_eval module or name `path` imports;
    `package` is the one its relative imports start from."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from acol_eval import maps` imports a subpackage by name
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return [(line, target) for line, target in found
            if target == "acol_eval" or target.startswith("acol_eval.")]


def _subpackage(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANKS else None


def test_every_subpackage_has_a_rank():
    folders = {p.name for p in PACKAGE.iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(RANKS) - TOP_MODULES
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    expected = sorted(["__init__.py", "__main__.py", *(f"{m}.py" for m in TOP_MODULES)])
    assert loose == expected, f"modules outside the subpackages: {loose}"


def test_no_module_imports_from_a_higher_subpackage():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _subpackage(_module_name(path))  # acol_eval.api: "api", rank 9
        if own is None:  # acol_eval/__init__.py and __main__.py: the public top
            continue
        for line, target in _imported(path, _package(path)):
            other = _subpackage(target)
            if other is not None and RANKS[other] > RANKS[own]:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}, rank "
                                 f"{RANKS[own]}) imports {target} ({other}, rank {RANKS[other]})")
    assert not offenders, "upward imports:\n" + "\n".join(offenders)


def test_the_rank_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from ..training.trainer import train\n")
    assert _imported(module, "acol_eval.maps") == [(2, "acol_eval.training.trainer.train")]


def test_the_api_module_is_ranked_above_every_stage():
    """acol_eval/api.py may import every stage; a stage importing the API is upward."""
    assert RANKS["api"] > max(rank for name, rank in RANKS.items() if name != "api")
    assert _subpackage("acol_eval.api") == "api"
