"""Where a recipe is found: `--config` takes a path, or the name of a recipe shipped in the package.

    path = resolve_recipe("configs/demo.yaml")   # the file as given when it exists, else the shipped one
    path = resolve_recipe("gpu_rsna")            # a shipped recipe by name
    shipped_recipes()                            # ['cpu_rsna', 'demo', ...]

The recipes live in the repository's top-level configs/; detect/configs points there in a
checkout (a symlink) and holds copies in an installed wheel (package data), so a `pip install .`
finds them from any folder.
"""
from __future__ import annotations

from pathlib import Path

from data_prep.errors import ConfigError

SHIPPED_RECIPES_DIR = Path(__file__).resolve().parent / "configs"
RECIPE_SUFFIXES = (".yaml", ".yml")


def shipped_recipes() -> list[str]:
    """The names of the recipes shipped with the package, sorted."""
    if not SHIPPED_RECIPES_DIR.is_dir():
        return []
    return sorted(p.stem for p in SHIPPED_RECIPES_DIR.iterdir() if p.suffix in RECIPE_SUFFIXES)


def resolve_recipe(path: str | Path) -> Path:
    """`path` when it is a file; else, for a bare name (`demo`, `demo.yaml`) or `configs/NAME.yaml`,
    the shipped recipe of that name; else a ConfigError naming the path and the shipped recipes."""
    given = Path(path)
    if given.is_file():
        return given
    if given.parent in (Path("."), Path("configs")):
        name = given.name if given.suffix in RECIPE_SUFFIXES else given.name + ".yaml"
        shipped = SHIPPED_RECIPES_DIR / name
        if shipped.is_file():
            return shipped
    names = ", ".join(shipped_recipes()) or "none found"
    raise ConfigError(f"{given}: config file not found (a path, or a shipped recipe: {names})")
