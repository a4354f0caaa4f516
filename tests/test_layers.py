"""Imports run streaming -> avatar -> models, never back (imports inside functions included), and the
`avatar` command lives above all of them."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"models": 0, "avatar": 1, "streaming": 2}  # a module may import its own layer and those below


def imported_packages(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) for every import in the file, relative ones resolved."""
    package = path.relative_to(root).parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climbs within the package it sits in
                base = package[:len(package) - node.level + 1]
                found.append((node.lineno, base[0] if base else ""))
            elif node.module:
                found.append((node.lineno, node.module.split(".")[0]))
    return [(line, name) for line, name in found if name in LAYERS]


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for layer, rank in LAYERS.items():
        for path in sorted((root / layer).rglob("*.py")):
            for line, name in imported_packages(path, root):
                if LAYERS[name] > rank:
                    bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    (tmp_path / "models" / "training").mkdir(parents=True)
    (tmp_path / "avatar").mkdir()
    (tmp_path / "models" / "training" / "data.py").write_text("def f():\n    from avatar.session import Session\n")
    (tmp_path / "models" / "ok.py").write_text("from .training import data\nimport numpy\n")
    (tmp_path / "avatar" / "cli.py").write_text("import models.dit\n\n\ndef serve():\n    import streaming.server\n")
    assert upward_imports(tmp_path) == ["models/training/data.py:2 imports avatar",
                                        "avatar/cli.py:5 imports streaming"]


@pytest.mark.parametrize("command", ["render", "bench", "eval", "serve"])
def test_the_command_line_offers_every_command(command, capsys):
    from streaming.cli import build_parser

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith(f"usage: avatar {command}")


def test_the_engine_command_line_does_not_load_the_transport():
    code = ("import sys, avatar.cli; avatar.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'streaming'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
