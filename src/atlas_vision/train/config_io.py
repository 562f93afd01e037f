"""Loading, overriding, validating and dumping the :class:`~atlas_vision.train.config.TrainConfig` tree.

The work is done by OmegaConf structured configs (``OmegaConf.structured`` + ``OmegaConf.update`` +
``OmegaConf.to_object``): typed nodes built from the dataclass annotations convert and validate every value, and
the dataclass constructors then run their ``__post_init__`` range checks.  This module only adapts OmegaConf to the
project's contract (see ``docs/design.md``, "Configuration"):

* order of precedence: dataclass defaults (``TrainConfig()``) < base mapping < YAML file < dotted overrides;
* every error is a :class:`ConfigError` naming the dotted key (``optim.lr``, ``data.img_size[0]``), with a close match
  for unknown keys;
* command-line values are tokens (``--data.img_size 96 128`` or ``96,128``, ``--model.compile`` = true,
  ``null``); they are read as YAML scalars, except that a string field takes its text verbatim;
* YAML scalars are typed already, so a string is not accepted for a ``bool`` or ``int`` field (``compile: "yes"``
  is an error; OmegaConf alone would accept it); a numeric string is accepted for a float (PyYAML reads ``3e-4``
  as a string);
* an ``int`` pair (``img_size``) may be given as one number (``img_size: 128`` -> ``(128, 128)``);
* free-form ``dict`` fields (``model.kwargs``) accept dotted sub-keys: ``--model.kwargs.communication single_scale``.
"""

from __future__ import annotations

import dataclasses
import difflib
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")

_NONE = {"null", "none", "~", ""}


class ConfigError(ValueError):
    """An invalid configuration: unknown key, wrong type or invalid value (the message names the key)."""


# ----------------------------------------------------------------------------------------------- types and keys


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _without_none(tp: Any) -> Any:
    """``X | None`` -> ``X`` (other types unchanged)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _unknown_key(key: str, valid: Sequence[str], where: str) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1)
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    hint = f" (did you mean {parent + close[0]!r}?)" if close else ""
    level = f"under {where!r}" if where else "at the top level"
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys {level}: {', '.join(valid)}")


def _wrong_type(key: str, tp: Any, value: Any) -> ConfigError:
    if typing.get_origin(tp) is typing.Literal:
        choices = ", ".join(map(repr, typing.get_args(tp)))
        return ConfigError(f"config key {key!r}: expected one of {choices}, got {value!r}")
    return ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def field_type(cls: type, dotted: str) -> Any:
    """The annotated type of the value at ``dotted`` (e.g. ``optim.lr``; ``Any`` below a free-form dict).

    Raises:
        ConfigError: unknown key (with a close match), or a sub-key of a value that has none.
    """
    parts = dotted.split(".")
    tp: Any = cls
    for i, part in enumerate(parts):
        where = ".".join(parts[:i])
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            valid = [f.name for f in dataclasses.fields(tp) if f.init]
            if part not in valid:
                raise _unknown_key(".".join(parts[: i + 1]), valid, where)
            tp = hints[part]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        elif tp is not Any:
            raise ConfigError(f"config key {dotted!r}: {where!r} is a {_type_name(tp)}, it has no sub-key {part!r}")
    return tp


# ----------------------------------------------------------------------------------------------- assignment


def _check_value(key: str, tp: Any, value: Any) -> Any:
    """What OmegaConf does not check itself: strict YAML scalars, pair broadcast, sequence length, element keys."""
    base = _without_none(tp)
    if value is None:
        return value
    if base is bool and not isinstance(value, bool):
        raise _wrong_type(key, tp, value)
    if base is int and isinstance(value, (bool, str)):
        raise _wrong_type(key, tp, value)
    if typing.get_origin(base) is dict and not isinstance(value, Mapping):
        raise _wrong_type(key, tp, value)
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        if isinstance(value, int) and not isinstance(value, bool) and set(args) == {int}:
            value = [value] * len(args)  # img_size: 128 -> (128, 128)
        if not isinstance(value, (list, tuple, ListConfig)):
            raise _wrong_type(key, tp, value)
        if Ellipsis not in args and len(value) != len(args):
            raise ConfigError(f"config key {key!r}: expected {len(args)} values ({_type_name(tp)}), got {value!r}")
        for i, (item, item_tp) in enumerate(zip(value, args if Ellipsis not in args else [args[0]] * len(value))):
            try:
                ListConfig([item], element_type=item_tp)
            except OmegaConfBaseException:
                raise _wrong_type(f"{key}[{i}]", item_tp, item) from None
    return value


def _assign(cfg: DictConfig, key: str, tp: Any, value: Any) -> None:
    """``cfg[key] = value`` through OmegaConf's typed nodes; errors name ``key``."""
    value = _check_value(key, tp, value)
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except OmegaConfBaseException:
        raise _wrong_type(key, tp, value) from None


def _assign_tree(cfg: DictConfig, cls: type, mapping: Any, prefix: str = "") -> None:
    """Assign every leaf of the nested ``mapping`` (keys relative to ``prefix``) into ``cfg``."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"config section {prefix or '<root>'!r}: expected a mapping, got {mapping!r}")
    for name, value in mapping.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        tp = field_type(cls, key)
        if dataclasses.is_dataclass(tp):
            _assign_tree(cfg, cls, value, key)
        else:
            _assign(cfg, key, tp, value)


def _instantiate(cls: type[T], node: DictConfig, prefix: str = "") -> T:
    """The dataclass tree of ``node``, section by section, so a ``__post_init__`` error names its section."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        child = node[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _instantiate(hints[f.name], child, key)
        else:
            kwargs[f.name] = OmegaConf.to_object(child) if isinstance(child, (DictConfig, ListConfig)) else child
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        msg = str(err)
        if "config key" in msg:
            raise ConfigError(msg) from err
        first = msg.split(maxsplit=1)[0] if msg else ""
        where = f"config key {prefix + '.' + first!r}" if first in kwargs else f"config section {prefix or '<root>'!r}"
        raise ConfigError(f"{where}: {msg}") from err


def _schema(cls: type) -> DictConfig:
    """The typed OmegaConf tree of ``cls()`` (its full defaults, including section factories like
    ``default_data()``), so overriding one key of a section keeps the section's other defaults."""
    return OmegaConf.structured(cls())


# ----------------------------------------------------------------------------------------------- public API


def from_dict(cls: type[T], mapping: Mapping[str, Any]) -> T:
    """Build dataclass ``cls`` from a nested mapping (over its defaults); unknown keys and wrong types raise
    :class:`ConfigError`."""
    cfg = _schema(cls)
    _assign_tree(cfg, cls, mapping)
    return _instantiate(cls, cfg)


def parse_cli_value(tokens: Sequence[str], tp: Any, key: str) -> Any:
    """Command-line ``tokens`` for a value of type ``tp`` as a YAML value (validated later, by OmegaConf).

    A string field takes its text verbatim (``null`` = None where allowed); a tuple or list takes several tokens
    or one comma-separated token; anything else is read as a YAML scalar (``3e-4``, ``true``, ``[1, 2]``).
    """
    base = _without_none(tp)
    if len(tokens) == 1 and tokens[0].lower() in _NONE and base is not tp:
        return None
    if typing.get_origin(base) is tuple and len(tokens) == 1 and "," not in tokens[0]:
        return parse_cli_value(tokens, typing.get_args(base)[0], key)  # one number for a pair: 96 -> (96, 96)
    if typing.get_origin(base) in (tuple, list):
        items = [t.strip() for t in tokens[0].split(",")] if len(tokens) == 1 and "," in tokens[0] else list(tokens)
        args = [a for a in typing.get_args(base) if a is not Ellipsis] or [Any]
        return [parse_cli_value([item], args[min(i, len(args) - 1)], key) for i, item in enumerate(items)]
    if len(tokens) != 1:
        raise ConfigError(f"config key {key!r}: expected one value ({_type_name(tp)}), got {' '.join(tokens)!r}")
    if base is str or typing.get_origin(base) is typing.Literal:
        return tokens[0]
    try:
        return yaml.safe_load(tokens[0])
    except yaml.YAMLError:
        return tokens[0]


def apply_overrides(cls: type[T], base: Mapping[str, Any], overrides: Sequence[tuple[str, Sequence[str]]]) -> T:
    """Apply command-line ``overrides`` ``[(dotted_key, tokens), ...]`` over defaults < ``base`` and build ``cls``."""
    return build_config(cls, None, overrides, base=base)


def build_config(
    cls: type[T],
    yaml_path: str | Path | None = None,
    overrides: Sequence[tuple[str, Sequence[str]]] = (),
    base: Mapping[str, Any] | None = None,
) -> T:
    """Defaults < ``base`` mapping < YAML file < ``overrides`` -> a validated ``cls`` instance."""
    cfg = _schema(cls)
    _assign_tree(cfg, cls, base or {})
    if yaml_path is not None:
        _assign_tree(cfg, cls, load_yaml(yaml_path))
    for dotted, tokens in overrides:
        tp = field_type(cls, dotted)
        if not tokens and _without_none(tp) is not bool:
            raise ConfigError(f"config key {dotted!r}: missing value (expected {_type_name(tp)})")
        value = parse_cli_value(tokens, tp, dotted) if tokens else True
        if dataclasses.is_dataclass(tp):
            _assign_tree(cfg, cls, value, dotted)
        else:
            _assign(cfg, dotted, tp, value)
    return _instantiate(cls, cfg)


def to_dict(obj: Any) -> Any:
    """A dataclass tree (or a container of plain values) as plain YAML-safe Python (tuples -> lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = OmegaConf.to_container(OmegaConf.structured(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists (``img_size: [128, 128]``)."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump_yaml(obj: Any) -> str:
    """The config tree as YAML text (field order preserved)."""
    return yaml.dump(to_dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (an empty file is an empty mapping).

    Raises:
        ConfigError: a missing file, malformed YAML (one line: file, line, column and the parser's complaint) or a
            top level that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping at the top level, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------------------------- help text


def describe(obj: Any, prefix: str = "") -> list[str]:
    """One help line per leaf key of a dataclass instance (``--key  type = default``) and its documentation (the
    field's attribute docstring or ``Attributes:`` entry, read by ``docstring_parser``)."""
    import docstring_parser

    hints = typing.get_type_hints(type(obj))
    docs = {p.arg_name: p.description or "" for p in docstring_parser.parse_from_object(type(obj)).params}
    lines: list[str] = []
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines += [f"\n{key}:", *describe(value, key)]
            continue
        lines.append(f"  --{key:<28} {_type_name(hints[f.name]):<26} = {to_dict(value)!r}")
        doc = " ".join(docs.get(f.name, "").split())
        lines += textwrap.wrap(doc, width=116, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return lines
