"""The package layout: each package imports only those below it, no module imports
another in a circle, and the module paths of 0.1 still work for a release, with a
warning that names the new path (while slt itself never imports them)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import slt_cli

ROOT = Path(slt_cli.__file__).parent
# Bottom to top: a module may import its own package and those before it (and
# ``slt_cli`` itself, for ``__version__``).
ORDER = ("errors", "common", "data", "models", "cfg", "store", "run", "use", "show", "tune",
         "video", "commands", "cli", "__main__")

# slt 0.1's module paths, as a user's script may import them, and where each went.
MOVED = {
    **{f"slt_cli.{name}": f"slt_cli.{package}.{name}"
       for package, names in {
           "common": ("files", "extras", "ranges", "reporting"),
           "cfg": ("config", "config_checks", "config_text", "settings"),
           "store": ("checkpoints", "sidecar", "archive", "lock", "catalog"),
           "run": ("engine", "training", "plan", "resume", "history", "runfolder", "scoring",
                   "optimizer", "averaging", "regularisers", "metrics", "devices",
                   "distributed", "folds", "foldsummary", "selection", "teaching",
                   "trackers", "smoke", "results", "records"),
           "use": ("inference", "export", "ensemble", "distill", "analysis"),
           "show": ("console", "progress", "plots", "filmstrip"),
       }.items() for name in names},
    "slt_cli.tune.space": "slt_cli.cfg.tune_space",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of slt_cli but the old paths."""
    found = {_module_name(path): path for path in ROOT.rglob("*.py")}
    return {name: path for name, path in found.items() if name not in MOVED}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The slt_cli modules ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known and name not in MOVED:
                name = name.rpartition(".")[0]
            if name.startswith("slt_cli"):
                found.add(name)
    return found


def _package(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}


def test_slt_imports_no_old_path() -> None:
    used = {name: sorted(set(imports) & set(MOVED)) for name, imports in _graph().items()}
    assert not {name: old for name, old in used.items() if old}


def test_each_package_imports_only_those_below_it() -> None:
    upward = []
    for name, imports in _graph().items():
        if name == "slt_cli":
            continue
        level = ORDER.index(_package(name))
        upward += [f"{name} -> {target}" for target in imports
                   if target != "slt_cli" and ORDER.index(_package(target)) > level]
    assert not upward


def test_no_module_imports_itself_in_a_circle() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise AssertionError(" -> ".join((*path[path.index(name):], name)))
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_the_top_level_holds_only_the_cli_errors_and_the_old_paths() -> None:
    top = {path.stem for path in ROOT.glob("*.py")} - {name.split(".")[1] for name in MOVED}
    assert top == {"__init__", "__main__", "cli", "errors"}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_and_is_the_new_module(old: str) -> None:
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)  # as in a fresh interpreter
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is new
    public = [name for name in vars(new) if not name.startswith("_")]
    assert public and all(getattr(module, name) is getattr(new, name) for name in public)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert importlib.import_module(old) is new  # once per process


def test_the_old_spelling_of_a_users_import_still_works() -> None:
    code = ("import slt_cli.run.engine as new\n"
            "from slt_cli.engine import Trainer\n"
            "from slt_cli import checkpoints\n"
            "assert Trainer is new.Trainer and checkpoints.__name__ == "
            "'slt_cli.store.checkpoints'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # shown by the default filters, at the user's own line
    assert "<string>:2: DeprecationWarning: slt_cli.engine has moved to slt_cli.run.engine" \
        in done.stderr
    assert "<string>:3: DeprecationWarning: slt_cli.checkpoints has moved" in done.stderr


@pytest.mark.parametrize("args", [["-c", "import slt_cli.cli"], ["-m", "slt_cli", "--help"],
                                  ["-c", "from slt_cli import Trainer, load_config"]])
def test_normal_use_warns_about_nothing(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-W", "error", *args], capture_output=True,
                          text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
