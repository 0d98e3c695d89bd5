"""Reading a recipe safely: the YAML file, and any nested dict a Config is built from.

    read_recipe(path)             the file's mapping of sections, or one ConfigError line
    check_config_shape(values)    a ConfigError when a dict is too deep or too large to be a config
    shown(value)                  a value for an error message: bounded, whatever its size
    parse_override("train.lr=0.01")  ("train.lr", 0.01): a `--set` / `--grid` key and its typed value
    resolve_recipe("demo")        a path as given, or a recipe shipped in the package by name

A recipe is a few kilobytes; a config is a few sections of scalars and short lists. Hostile
or broken input is refused before it can cost much: a file over MAX_RECIPE_BYTES is not read,
YAML nested deeper than MAX_DEPTH is refused while it is parsed (before Python's recursion
limit), a structure of more than MAX_NODES values (an alias bomb shares one list many times) is
refused before anything walks it in full, and every message shows values through `shown`, never
a full repr. The same shape check guards configs stored in checkpoints and exported files.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

from data_prep.errors import ConfigError, printable

SHIPPED_RECIPES_DIR = Path(__file__).resolve().parent / "configs"
RECIPE_SUFFIXES = (".yaml", ".yml")
MAX_RECIPE_BYTES = 1 << 20  # 1 MiB: the largest recipe shipped is under 4 KiB
MAX_DEPTH = 16  # a config is section.key[i] deep; YAML nesting beyond this is refused while parsing
MAX_NODES = 10_000  # values in a whole config (a resolved config holds about 100)
MAX_SHOWN_CHARS = 100

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 2, 4, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = MAX_SHOWN_CHARS, MAX_SHOWN_CHARS, 40


def shown(value: Any) -> str:
    """repr(value) for a message: nested and long values abbreviated, one line, at most ~100 chars."""
    text = printable(_REPR.repr(value))
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "..."


def check_config_shape(values: Any, what: str = "the config") -> None:
    """Refuse (ConfigError) a nested dict/list deeper than MAX_DEPTH or holding more than
    MAX_NODES values or strings longer than MAX_RECIPE_BYTES in all. Walks with its own stack and
    stops at the first limit, so a shared or cyclic structure costs at most MAX_NODES steps."""
    stack: list[tuple[Any, int]] = [(values, 0)]
    nodes = chars = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(f"{what} holds more than {MAX_NODES:,} values (a YAML alias bomb?); refused")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{what} nests deeper than {MAX_DEPTH} levels; refused")
        if isinstance(value, dict):
            for key, item in value.items():
                chars += len(key) if isinstance(key, str) else 0
                stack.append((item, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            chars += len(value)
        if chars > MAX_RECIPE_BYTES:
            raise ConfigError(f"{what} holds more than {MAX_RECIPE_BYTES:,} characters of text; refused")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last) and
    nesting deeper than MAX_DEPTH (PyYAML composes recursively: 20,000 levels end in RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_NODES:
                mark = self.peek_event().start_mark
                raise ConfigError(f"line {mark.line + 1}: more than {MAX_NODES:,} aliases (a YAML alias bomb?)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(
                    f"line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels; a recipe is "
                    "a mapping of sections of values"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_unique_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"line {key_node.start_mark.line + 1}: key {shown(key)} is given twice (first on line {seen[key]})"
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_yaml_text(text: str) -> Any:
    """Parse recipe YAML text with the strict loader (duplicate keys, depth and aliases refused).
    Raises yaml.YAMLError for text that is not YAML, ConfigError for what the loader refuses."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor's own error: a date such as 2026-13-07
        raise yaml.YAMLError(f"a value YAML cannot construct: {exc}") from None


def split_override(text: str) -> tuple[list[str], Any]:
    """`key=value` -> (the key's parts, the value as YAML types it); see parse_override."""
    if "=" not in text:
        raise ConfigError(f"override {shown(text)} must look like key=value, e.g. train.lr=0.01")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {shown(text)} has an empty key")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except ConfigError as exc:
        raise ConfigError(f"override {shown(text)}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` -> (the dotted key, the value typed as YAML reads it: 0.01 a float, 8 an int,
    true a bool, [16, 32] a list, adamw a string), as `--set` and `detect sweep --grid` take it.
    The key itself is checked when a Config is built from it (config_from_dict)."""
    path, value = split_override(text)
    return ".".join(path), value


# Where a recipe is found: `--config` takes a path, or the name of a recipe shipped in the package
# (detect/configs links the repository's top-level configs/ in a checkout and holds copies in an
# installed wheel, so `pip install .` finds them from any folder).
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


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file's mapping of sections, or a ConfigError naming the file and the problem."""
    p = resolve_recipe(path)
    try:
        with open(p, "rb") as handle:
            data = handle.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise ConfigError(
            f"{p}: larger than {MAX_RECIPE_BYTES >> 20} MiB; a recipe holds only the keys it changes (a few kilobytes)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a UTF-8 text file (byte {exc.start} is 0x{exc.object[exc.start]:02x})") from None
    try:
        loaded = load_yaml_text(text)
        check_config_shape(loaded, "the recipe")
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise ConfigError(f"{p}: not valid YAML ({shown(first)[1:-1]})") from None
    if loaded is None:
        # An empty recipe would silently train every default (a 512 px ResNet-50 FPN v2).
        raise ConfigError(f"{p}: the recipe is empty; give at least its name, e.g. 'name: my_run'")
    if not isinstance(loaded, dict):
        raise ConfigError(f"{p}: top level must be a mapping of config sections")
    return loaded
