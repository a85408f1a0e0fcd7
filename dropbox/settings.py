"""DATA/config.toml: the operator's settings, read with the standard `tomllib`.

The file is derived from `Config`'s field metadata and nothing else: every field declared with
`setting(...)` (metadata `section` and `doc`, optional `min`/`max`/`choices`) is a key of its
section, with its doc as the comment above it; a field without metadata is not a setting. So a
field added to Config with metadata appears in the file `init` writes and is validated here,
with no change to this module.

A mistake in the file is never guessed around: `read_settings` collects one line per mistake
(syntax, unknown section or key, wrong type, out of range) and raises `SettingsError`; the
commands print those lines and exit 2 before touching anything.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dropbox.config import Config

FILE_NAME = "config.toml"

HEADER = """\
# Settings of this drop box install, read by every `python run.py` command at start.
# Change a value, remove the leading '#' of a commented one, then restart the service.
# A mistake (unknown key, wrong type, value out of range) stops the command with one line
# per mistake and exit status 2; nothing runs on a half-understood file.
# Command-line flags (--port, --admin-port, --host, --tor-control, --no-tor) win over this file.
# What admins change in the caseworker web admin (channel names, retention per channel) wins
# over the defaults set here: the defaults only apply where a channel sets nothing itself.
# Sizes are in bytes, durations in seconds or days as the key says.
"""


class SettingsError(Exception):
    """The settings file cannot be used; `problems` holds one line per mistake."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Setting:
    """One operator setting as the file sees it: derived from a Config field's metadata."""

    name: str
    section: str
    doc: str
    kind: type
    optional: bool
    default: Any
    minimum: Any = None
    maximum: Any = None
    choices: tuple[Any, ...] | None = None


def settings(cls: type[Config] = Config) -> Iterator[Setting]:
    """Every field of `cls` that carries `section` metadata, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "section" not in f.metadata:
            continue
        kind, optional = _unwrap(hints[f.name])
        yield Setting(name=f.name, section=f.metadata["section"], doc=f.metadata.get("doc", ""), kind=kind,
                      optional=optional, default=f.default, minimum=f.metadata.get("min"),
                      maximum=f.metadata.get("max"), choices=f.metadata.get("choices"))


def _unwrap(hint: Any) -> tuple[type, bool]:
    """`int` -> (int, False); `str | None` -> (str, True)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def read_settings(path: Path, *, cls: type[Config] = Config) -> dict[str, Any]:
    """The Config changes the file asks for (field name -> value), or SettingsError."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise SettingsError(path, [f"{path}: no such file"]) from e
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(path, [f"{path}: cannot be read ({e})"]) from e
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(path, [f"{path}: not valid TOML: {e}"]) from e
    known: dict[str, dict[str, Setting]] = {}
    for s in settings(cls):
        known.setdefault(s.section, {})[s.name] = s
    problems: list[str] = []
    changes: dict[str, Any] = {}
    for section, table in raw.items():
        if section not in known:
            problems.append(f"{path}: unknown section [{section}] (known: {', '.join(sorted(known))})")
            continue
        if not isinstance(table, dict):
            problems.append(f"{path}: {section} must be a section ([{section}]), not a value")
            continue
        for key, value in table.items():
            setting = known[section].get(key)
            if setting is None:
                problems.append(f"{path}: [{section}] unknown key {key!r} "
                                f"(known: {', '.join(known[section])})")
                continue
            try:
                changes[key] = _check(setting, value)
            except ValueError as e:
                problems.append(f"{path}: [{section}] {key}: {e}")
    if problems:
        raise SettingsError(path, problems)
    return changes


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path string"}


def _check(setting: Setting, value: Any) -> Any:
    """The value as the Config field wants it, or ValueError saying what is wrong in one line."""
    kind = setting.kind
    origin = typing.get_origin(kind)
    if origin in (tuple, list):  # a list of scalars, e.g. tuple[str, ...]
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {_toml(value)}")
        item = Setting(name=setting.name, section=setting.section, doc="", kind=typing.get_args(kind)[0],
                       optional=False, default=None, choices=setting.choices)
        items = [_check(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    ok = (isinstance(value, bool) if kind is bool
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, int | float) and not isinstance(value, bool) if kind is float
          else isinstance(value, str))
    if not ok:
        raise ValueError(f"expected {_KIND_NAMES.get(kind, kind.__name__)}, got {_toml(value)}")
    if kind is Path:
        value = Path(value)
    elif kind is float:
        value = float(value)
    if setting.choices is not None and value not in setting.choices:
        raise ValueError(f"{_toml(value)} is not one of {', '.join(_toml(c) for c in setting.choices)}")
    if setting.minimum is not None and value < setting.minimum:
        raise ValueError(f"{_toml(value)} is below the minimum {setting.minimum}")
    if setting.maximum is not None and value > setting.maximum:
        raise ValueError(f"{_toml(value)} is above the maximum {setting.maximum}")
    if kind is str and setting.optional and not value.strip():
        raise ValueError("is empty; comment the line out to leave it unset")
    return value


def _toml(value: Any) -> str:
    """A value as it is written in TOML (strings quoted, booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def render_settings(config: Config) -> str:
    """The whole file for `config`: every setting present, each with its doc; unset ones commented."""
    lines = [HEADER.rstrip("\n")]
    by_section: dict[str, list[Setting]] = {}
    for s in settings(type(config)):
        by_section.setdefault(s.section, []).append(s)
    for section, members in by_section.items():
        lines += ["", f"[{section}]"]
        for s in members:
            lines += _entry(s, getattr(config, s.name))
    return "\n".join(lines) + "\n"


def _entry(s: Setting, value: Any) -> list[str]:
    """One setting: its doc wrapped as comments, its limits, then the line (commented if unset)."""
    lines = textwrap.wrap(s.doc, width=98, initial_indent="# ", subsequent_indent="# ")
    limits = _limits(s)
    if limits:
        lines.append(f"# ({limits})")
    lines.append(f"# {s.name} = {_placeholder(s)}" if value is None else f"{s.name} = {_toml(value)}")
    return lines


def _limits(s: Setting) -> str:
    parts = []
    if s.choices is not None:
        parts.append("one of " + ", ".join(_toml(c) for c in s.choices))
    if s.minimum is not None:
        parts.append(f"at least {s.minimum}")
    if s.maximum is not None:
        parts.append(f"at most {s.maximum}")
    if s.optional:
        parts.append("optional: leave commented out for none")
    return "; ".join(parts)


def _placeholder(s: Setting) -> str:
    return {int: "0", float: "0.0", bool: "false"}.get(s.kind, '""')


def write_settings(config: Config, path: Path) -> bool:
    """Write the file for `config` unless one is there already (an operator's file is never
    overwritten). Returns whether it was written. 0600: it may name the SMTP login."""
    if path.exists():
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as f:
        f.write(render_settings(config))
    path.chmod(0o600)
    return True


def load_config(base: Config, path: Path) -> Config:
    """`base` with the file's settings applied; SettingsError if the file has mistakes."""
    return base.replace(**read_settings(path))


def check_combination(config: Config) -> list[str]:
    """Mistakes that are only mistakes together (each value alone is fine)."""
    problems = []
    if config.smtp_user and not config.smtp_password_file:
        problems.append("[smtp] smtp_user is set but smtp_password_file is not")
    if config.smtp_user and config.smtp_security == "none":
        problems.append("[smtp] a login (smtp_user) needs smtp_security = \"starttls\" or \"tls\": "
                        "the password would cross the network in the clear")
    if config.smtp_password_file and not config.smtp_password_file.is_file():
        problems.append(f"[smtp] smtp_password_file {config.smtp_password_file} is not a readable file")
    if config.max_file_bytes > config.max_submission_bytes:
        problems.append("[uploads] max_file_bytes is larger than max_submission_bytes")
    if config.tor_mode == "system" and not config.tor_control:
        problems.append("[tor] tor_mode = \"system\" needs tor_control (tor's ControlSocket path or ControlPort)")
    if config.tor_mode != "system" and config.tor_control:
        problems.append("[tor] tor_control is only used with tor_mode = \"system\"")
    return problems


def settings_for(config: Config, path: Path) -> Config:
    """The Config the commands run with: `config` plus the file (if there is one: an install made
    before settings existed runs on the defaults), checked as a whole."""
    if path.exists():
        config = load_config(config, path)
    problems = check_combination(config)
    if problems:
        raise SettingsError(path, [f"{path}: {p}" for p in problems])
    return config

