"""detect/ is built in layers (docs/architecture.md draws them): a module imports only from its
own layer or the layers below it, at module top or inside a function alike. Reading a recipe
(detect.config) imports no torch; `detect eda --labels` (the tables alone) imports neither torch
nor scikit-learn (with SciPy, about 80 MiB resident before a row is read)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DETECT = ROOT / "detect"

# Top to bottom; each entry is a layer, a set of detect/ subpackages or top-level modules.
LAYERS: list[set[str]] = [
    {"__init__", "__main__"},  # the package facade: from detect import Detector
    {"demo", "eda", "serve", "compare", "sweep"},  # one command each
    {"training"},
    {"evaluation"},
    {"inference"},
    {"explain", "export", "pacs"},  # what inference drives beside the model
    {"outputs"},
    {"models"},
    {"data"},
    {
        "config",
        "config_checks",
        "config_format",
        "recipe",
        "model_facts",
        "devices",
        "distributed",
        "predictions",
        "extras",
        "progress",
        "_version",
        "tracking",
    },
]
RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}


def part_of(module: str) -> str:
    """'detect.inference.api' -> 'inference'; 'detect' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def detect_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute or relative import of a detect module in a file."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return [(line, m) for line, m in found if m == "detect" or m.startswith("detect.")]


def _sources() -> list[Path]:
    return sorted(DETECT.rglob("*.py"))


def test_every_part_of_detect_has_a_layer():
    parts = {p.stem if p.parent == DETECT else p.relative_to(DETECT).parts[0] for p in _sources()}
    assert parts - RANK.keys() == set(), "new parts of detect/: add them to LAYERS and docs/architecture.md"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_downward(path):
    own = RANK[part_of(module_name(path))]
    upward = [
        f"line {line}: {module} ({part_of(module)})"
        for line, module in detect_imports(path)
        if RANK[part_of(module)] < own
    ]
    assert not upward, f"{path.relative_to(ROOT)} imports from a layer above it: {upward}"


def test_the_layers_are_the_ones_architecture_md_draws():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        part for part in RANK if not part.startswith("__") and part != "_version" and f"detect/{part}" not in text
    ]
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_an_upward_import_is_caught(tmp_path):
    assert part_of("detect.inference.api") == "inference" and part_of("detect") == "__init__"
    assert RANK["config"] > RANK["models"] > RANK["inference"]


def modules_imported(code: str, roots: tuple[str, ...]) -> list[str]:
    """The modules under `roots` that running `code` in a fresh interpreter imports (first five)."""
    probe = code + (
        "\nimport sys\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})\n"
        "print('imported:', ','.join(bad[:5]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    last = out.stdout.strip().splitlines()[-1]  # what `code` printed comes before
    assert last.startswith("imported:"), out.stdout
    return [m for m in last.removeprefix("imported:").strip().split(",") if m]


def test_reading_a_recipe_imports_no_torch():
    code = "from detect.config import load_config\nload_config('configs/demo.yaml')"
    imported = modules_imported(code, ("torch", "torchvision"))
    assert not imported, f"loading a recipe imported: {imported}"


def test_eda_on_the_label_tables_imports_neither_torch_nor_sklearn(tmp_path):
    labels = tmp_path / "stage_2_train_labels.csv"
    labels.write_text("patientId,x,y,width,height,Target\na,,,,,0\nb,10,20,30,40,1\nb,50,60,70,80,1\n")
    code = (
        "from cli import app\n"
        f"app(['eda', '--labels', {str(labels)!r}, '--out', {str(tmp_path / 'eda')!r}], standalone_mode=False)"
    )
    imported = modules_imported(code, ("torch", "torchvision", "sklearn"))
    assert not imported, f"detect eda --labels imported: {imported}"
    assert (tmp_path / "eda" / "eda.json").is_file()
