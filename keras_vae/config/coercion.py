"""Values from JSON, YAML and the command line, coerced to a config dataclass's declared field types,
and nested overrides merged into a configuration. Generic over the dataclasses (no schema import):

    merge(RunConfig(), {"model": {"latent_dim": 8}})  ->  RunConfig with model.latent_dim == 8
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, Mapping

from keras_vae.errors import ConfigError, choices
from keras_vae.utils.validation import short

MAX_INT = 2 ** 63 - 1  # any integer option (int64)


def _sections(config_cls: type) -> dict[str, type]:
    """{section name: its dataclass} of a configuration whose dataclass fields are sections."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls) if dataclasses.is_dataclass(hints[f.name])}


def coerce(cls: type, name: str, value: Any) -> Any:
    """Convert JSON/YAML/CLI values to the dataclass field's declared type."""
    hint = typing.get_type_hints(cls)[name]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{cls.__name__.replace('Config', '').lower()}.{name} cannot be null")
    if optional:
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            if not isinstance(value, (list, tuple)):
                raise TypeError(value)
            return tuple(_scalar(args[0], v) for v in value)
        return _scalar(hint, value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}={short(value)} is not a valid {getattr(hint, '__name__', hint)}"
                          f"{_TYPE_HINTS.get(hint, '')}") from None


_TYPE_HINTS = {int: " (an integer)", float: " (a finite number)", bool: " (true or false)", str: " (a string)"}


def _scalar(hint: type, value: Any) -> Any:
    """One value as ``hint`` (bool, int, float or str); ValueError/TypeError when it is not one.

    Booleans are never numbers (YAML's ``yes`` must not become 1), floats must be finite, integers
    fit int64 and floats with a fraction are not integers."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            if value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if value.strip().lower() in ("0", "false", "no", "off"):
                return False
        raise ValueError(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) and hint in (int, float):
        raise TypeError(value)
    if hint is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            value = int(value)
        elif isinstance(value, str):
            value = int(value.strip())
        if not -MAX_INT - 1 <= value <= MAX_INT:
            raise ValueError(value)
        return int(value)
    if hint is float:
        result = float(value)
        if not math.isfinite(result):
            raise ValueError(value)
        return result
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    return value


def merge(config: Any, overrides: Mapping[str, Any]) -> Any:
    """Return ``config`` with nested ``overrides`` ({'model': {'latent_dim': 8}, ...}) applied."""
    if not isinstance(overrides, Mapping):
        raise ConfigError("a configuration must be a mapping of sections: model, loss, data, train")
    sections_of = _sections(type(config))
    sections = {}
    for key, values in overrides.items():
        if key == "preset":
            continue
        if key not in sections_of:
            raise ConfigError(f"unknown configuration section {short(key)}: choose {choices(sorted(sections_of))}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"configuration section {short(key)} must be a mapping of options, got {short(values)}")
        cls = sections_of[key]
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted((k for k in values if k not in valid), key=str)
        if unknown:
            raise ConfigError(_unknown_option(key, unknown[0], valid, sections_of))
        current = getattr(config, key)
        changes = {name: coerce(cls, name, v) for name, v in values.items()}
        try:
            sections[key] = dataclasses.replace(current, **changes)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid {key} configuration: {short(str(exc), 200)}") from None
    preset = overrides.get("preset", config.preset)
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"preset must be one preset name (a string), got {short(preset)}")
    return dataclasses.replace(config, preset=preset, **sections)


def _unknown_option(section: str, name: Any, valid: set[str], sections_of: Mapping[str, type]) -> str:
    """The message for option ``name`` that section ``section`` lacks: the section that has it, else the
    closest option names, then the valid ones."""
    owners = [key for key, cls in sections_of.items()
              if key != section and name in {f.name for f in dataclasses.fields(cls)}]
    if owners:
        return (f"unknown {section} option {short(name)}: {name} is an option of section "
                f"{' and '.join(owners)} ({', '.join(f'{owner}.{name}' for owner in owners)})")
    close = difflib.get_close_matches(str(name), sorted(valid), n=2, cutoff=0.75)
    if close:
        return f"unknown {section} option {short(name)}: did you mean {choices(close)}? (choose {choices(sorted(valid))})"
    return f"unknown {section} option {short(name)}: choose {choices(sorted(valid))}"


def section_from_dict(cls: type, values: Mapping[str, Any]):
    """Rebuild one config dataclass (e.g. ``ModelConfig``) from a plain dict such as ``get_config()``."""
    if isinstance(values, cls):
        return values
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in values if k not in valid), key=str)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option {short(unknown[0])}: choose {choices(sorted(valid))}")
    return cls(**{name: coerce(cls, name, v) for name, v in values.items()})
