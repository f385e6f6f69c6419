"""Configuration files: a YAML or JSON file read into a nested dict (sections -> options), with a clear
error for a missing, oversized, non-UTF-8, unparsable or non-mapping file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keras_vae.errors import ConfigError
from keras_vae.utils.validation import short

MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON configuration file into a nested dict."""
    path = Path(path)
    try:
        if not path.is_file():
            raise ConfigError(f"configuration file {short(str(path))} is a folder: pass a YAML or JSON file"
                              if path.is_dir() else
                              f"configuration file {short(str(path))} is not a regular file: pass a YAML or JSON file"
                              if path.exists() else f"configuration file {short(str(path))} does not exist")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"configuration file {short(str(path))} is {path.stat().st_size} bytes, more than "
                              f"{MAX_CONFIG_BYTES}: is it really a configuration?")
        text = path.read_bytes().decode("utf-8")
    except ConfigError:  # a ValueError, but already the one line to show
        raise
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {short(str(path))} is not UTF-8 text (byte {exc.start}): "
                          "save it as UTF-8 YAML or JSON") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration file {short(str(path))}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one clear line
        raise ConfigError(f"cannot parse configuration file {short(str(path))}: "
                          f"{short(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 300)}") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"configuration file {short(str(path))} must hold a mapping of sections, got "
                          f"{short(values)}")
    return values
