"""The package layering, checked on the import statements of every module of the tree.

Layers, bottom up: flownet2 (imports nothing of libs), runtime and modules, networks, then
datasets and evaluation, then engine and inference side by side, then the CLI helper and the
demo, then the scripts. Each layer imports only layers below it; no import cycle anywhere.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "libs": set(),
    "flownet2": set(),
    "libs.runtime": set(),
    "libs.modules": {"libs.runtime"},
    "libs.networks": {"flownet2", "libs.runtime", "libs.modules"},
    "libs.datasets": {"libs.runtime"},
    "libs.evaluation": {"libs.runtime", "libs.datasets"},
    "libs.engine": {"flownet2", "libs.runtime", "libs.modules", "libs.networks", "libs.datasets",
                    "libs.evaluation"},
    "libs.inference": {"flownet2", "libs.runtime", "libs.modules", "libs.networks", "libs.datasets",
                       "libs.evaluation"},
}
BELOW_CLI = set(ALLOWED)
ALLOWED["libs.cli"] = BELOW_CLI
ALLOWED["libs.demo"] = BELOW_CLI


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "libs" and len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of this tree that `path` imports (absolute and relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("libs", "flownet2") and _exists(m)}


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _library_modules() -> list[Path]:
    return sorted(p for folder in ("libs", "flownet2") for p in (ROOT / folder).rglob("*.py"))


def test_every_library_package_has_a_layer():
    packages = {_package(_module_name(p)) for p in _library_modules()}
    assert packages <= set(ALLOWED), packages - set(ALLOWED)
    assert not (ROOT / "libs" / "utils").exists()


@pytest.mark.parametrize("path", _library_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_lower_layers(path):
    own = _package(_module_name(path))
    wrong = sorted(m for m in _imports(path) if _package(m) != own and _package(m) not in ALLOWED[own])
    assert not wrong, f"{path.relative_to(ROOT)} ({own}) imports {wrong}"


def test_no_import_cycles():
    graph = {_module_name(p): {m for m in _imports(p) if m != _module_name(p)} for p in _library_modules()}
    # a module importing a package also runs that package's __init__: follow those edges too
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_scripts_parse_and_call_through_the_cli_helper():
    for script in ("train.py", "train_fgplg.py", "generate_pseudo_labels.py", "inference.py", "evaluate.py"):
        imports = _imports(ROOT / script)
        assert "libs.cli" in imports or any(m.startswith("libs.cli.") for m in imports), script
        assert "run_cli" in (ROOT / script).read_text(), script


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("#", "-r"))]


def test_pyproject_lists_the_requirements_files():
    """`pip install -e .[dev,onnx]` and `pip install -r requirements-dev.txt` install the same."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirements("requirements.txt")
    extras = project["optional-dependencies"]
    assert extras["dev"] + extras["onnx"] == _requirements("requirements-dev.txt")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {name.split(".")[0] for name in packages["find"]["include"]} == {"libs", "flownet2"}


def test_no_sys_path_edits_outside_tests():
    """Scripts, benchmarks and the packages import the project as it is laid out (run from the
    checkout, or installed), never by editing the module search path."""
    files = [*ROOT.glob("*.py"), *(p for folder in ("libs", "flownet2", "benchmarks", "scripts")
                                   for p in (ROOT / folder).rglob("*.py"))]
    offenders = [str(p.relative_to(ROOT)) for p in files if "sys.path" in p.read_text()]
    assert not offenders, offenders
