"""Loading, overriding, type-checking and dumping the :class:`~atlas_vision.train.config.TrainConfig` tree.

Order of precedence: dataclass defaults < YAML file < dotted overrides (``--optim.lr 3e-4``).

* Every key is checked against the dataclass fields; an unknown key raises :class:`ConfigError` naming it, a close
  match and the valid keys at that level.
* Every value is converted to the field's annotated type; a wrong type raises :class:`ConfigError` naming the key,
  the expected type and the value.  Strings from the command line are parsed (``"3e-4"`` -> float, ``"128,128"`` or
  two tokens -> tuple, ``"true"`` -> bool, ``"null"`` -> None); YAML values must already have the right type, except
  that an int is accepted for a float and a numeric string for a float (PyYAML reads ``3e-4`` as a string).
* Free-form ``dict`` fields (``model.kwargs``) accept dotted sub-keys: ``--model.kwargs.communication single_scale``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid configuration: unknown key, wrong type or invalid value (the message names the key)."""


# ----------------------------------------------------------------------------------------------- type helpers


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _unknown_key(key: str, valid: Sequence[str], where: str) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1)
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    hint = f" (did you mean {parent + close[0]!r}?)" if close else ""
    level = f"under {where!r}" if where else "at the top level"
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys {level}: {', '.join(valid)}")


def _wrong_type(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"null", "none", "~", ""}


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/Python ``value`` to type ``tp`` (strictly; see the module docstring), naming ``key`` on error."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _wrong_type(key, tp, value)
        return from_dict(tp, value, prefix=key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        raise _wrong_type(key, tp, value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key {key!r}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and len(args) >= 2
            and Ellipsis not in args
            and all(a is int for a in args)
        ):
            value = [value] * len(args)  # img_size: 128 -> (128, 128)
        if not isinstance(value, (list, tuple)):
            raise _wrong_type(key, tp, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key {key!r}: expected {len(args)} values ({_type_name(tp)}), got {value!r}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _wrong_type(key, tp, value)
        return [coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong_type(key, tp, value)
        val_tp = args[1] if args else Any
        return {str(k): coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _wrong_type(key, tp, value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(key, tp, value)
        return value
    if tp is float:
        if isinstance(value, bool):
            raise _wrong_type(key, tp, value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # PyYAML 1.1 reads 3e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _wrong_type(key, tp, value)
    if tp is str:
        if not isinstance(value, str):
            raise _wrong_type(key, tp, value)
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise _wrong_type(key, tp, value)
        return Path(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _wrong_type(key, tp, value)


def parse_cli_value(tokens: Sequence[str], tp: Any, key: str) -> Any:
    """Convert command-line ``tokens`` (one or more strings) to type ``tp``, naming ``key`` on error."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        if len(tokens) == 1 and tokens[0].lower() in _NONE and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_cli_value(tokens, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {' '.join(tokens)!r}")
    if origin in (tuple, list):
        items = list(tokens)
        if len(items) == 1 and "," in items[0]:
            items = [t.strip() for t in items[0].split(",")]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            elem_types = [args[0]] * len(items)
        elif origin is tuple:
            if len(items) == 1 and len(args) > 1 and all(a is int for a in args):
                items = items * len(args)
            if len(items) != len(args):
                raise ConfigError(
                    f"config key {key!r}: expected {len(args)} values ({_type_name(tp)}), got {' '.join(tokens)!r}"
                )
            elem_types = list(args)
        else:
            elem_types = [args[0] if args else Any] * len(items)
        values = [parse_cli_value([t], et, f"{key}[{i}]") for i, (t, et) in enumerate(zip(items, elem_types))]
        return tuple(values) if origin is tuple else values
    if len(tokens) != 1:
        raise ConfigError(f"config key {key!r}: expected one value ({_type_name(tp)}), got {' '.join(tokens)!r}")
    text = tokens[0]
    try:
        if tp is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
        if tp is Path:
            return Path(text)
        if origin is typing.Literal:
            return coerce(text, tp, key)
        return coerce(yaml.safe_load(text), tp, key)  # dict, Any, ...
    except ConfigError:
        raise
    except (ValueError, yaml.YAMLError):
        raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {text!r}") from None


# ----------------------------------------------------------------------------------------------- tree <-> dict


def from_dict(cls: type[T], mapping: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping; unknown keys and wrong types raise :class:`ConfigError`."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"config section {prefix or '<root>'!r}: expected a mapping, got {mapping!r}")
    fields, hints = _fields(cls), _hints(cls)
    kwargs = {}
    for name, value in mapping.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            raise _unknown_key(key, list(fields), prefix)
        kwargs[name] = coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        msg = str(err)
        if "config key" in msg:
            raise ConfigError(msg) from err
        first = msg.split(maxsplit=1)[0] if msg else ""
        where = f"config key {prefix + '.' + first!r}" if first in fields else f"config section {prefix or '<root>'!r}"
        raise ConfigError(f"{where}: {msg}") from err


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain YAML-safe Python (tuples -> lists, Paths -> str)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists (``img_size: [128, 128]``)."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump_yaml(obj: Any) -> str:
    """The config tree as YAML text (field order preserved)."""
    return yaml.dump(to_dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    with path.open() as f:
        data = yaml.safe_load(f)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping at the top level, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------------------------- dotted overrides


def field_type(cls: type, dotted: str) -> tuple[Any, list[str]]:
    """Resolve ``dotted`` (e.g. ``optim.lr`` or ``model.kwargs.communication``) against ``cls``.

    Returns ``(type, path)``: the annotated type of the addressed value (``Any`` below a free-form dict) and the
    key path as a list.
    """
    parts = dotted.split(".")
    tp: Any = cls
    for i, part in enumerate(parts):
        where = ".".join(parts[:i])
        if dataclasses.is_dataclass(tp):
            fields = _fields(tp)
            if part not in fields:
                raise _unknown_key(".".join(parts[: i + 1]), list(fields), where)
            tp = _hints(tp)[part]
        elif typing.get_origin(tp) is dict:
            args = typing.get_args(tp)
            tp = args[1] if args else Any
        elif tp is Any:
            continue
        else:
            raise ConfigError(f"config key {dotted!r}: {where!r} is a {_type_name(tp)}, it has no sub-key {part!r}")
    return tp, parts


def set_dotted(tree: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``tree[path[0]][path[1]]... = value``, creating intermediate dicts."""
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def apply_overrides(cls: type[T], base: Mapping[str, Any], overrides: Sequence[tuple[str, Sequence[str]]]) -> T:
    """Apply command-line ``overrides`` ``[(dotted_key, tokens), ...]`` to the nested mapping ``base`` and build
    ``cls`` from the result (validating everything)."""
    tree = to_dict(dict(base))
    for dotted, tokens in overrides:
        tp, path = field_type(cls, dotted)
        value = parse_cli_value(tokens, tp, dotted) if tokens else True if tp is bool else None
        if value is None and not tokens:
            raise ConfigError(f"config key {dotted!r}: missing value (expected {_type_name(tp)})")
        set_dotted(tree, path, to_dict(value))
    return from_dict(cls, tree)


def build_config(
    cls: type[T],
    yaml_path: str | Path | None = None,
    overrides: Sequence[tuple[str, Sequence[str]]] = (),
    base: Mapping[str, Any] | None = None,
) -> T:
    """Defaults < ``base`` mapping < YAML file < overrides -> a validated ``cls`` instance.

    The tree starts from the full defaults of ``cls()`` (including section factories such as ``default_data()``), so
    overriding one key of a section keeps the section's other defaults instead of falling back to the section
    class's own field defaults.
    """
    tree: dict[str, Any] = to_dict(cls())
    _merge(tree, to_dict(dict(base or {})))
    if yaml_path is not None:
        _merge(tree, load_yaml(yaml_path))
    return apply_overrides(cls, tree, overrides)


def _merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


# ----------------------------------------------------------------------------------------------- help text


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right after a field) of a dataclass, read from its source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = _google_attributes(inspect.getdoc(cls) or "")
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _google_attributes(doc: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` section."""
    docs: dict[str, str] = {}
    lines = doc.splitlines()
    if "Attributes:" not in lines:
        return docs
    name = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if line and not line.startswith(" "):
            break
        stripped = line.strip()
        head, sep, text = stripped.partition(": ")
        if line.startswith("    ") and not line.startswith("     ") and sep and head.isidentifier():
            name, docs[head] = head, text
        elif name and stripped:
            docs[name] += " " + stripped
    return docs


def describe(obj: Any, prefix: str = "") -> list[str]:
    """One help line per leaf key of a dataclass instance: ``--key  type = value  doc``."""
    lines: list[str] = []
    hints, docs = _hints(type(obj)), _field_docs(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"\n{key}:")
            lines += describe(value, key)
            continue
        doc = docs.get(f.name, "")
        lines.append(f"  --{key:<28} {_type_name(hints[f.name]):<26} = {to_dict(value)!r}")
        if doc:
            lines += textwrap.wrap(doc, width=116, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return lines
