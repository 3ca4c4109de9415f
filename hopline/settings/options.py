"""Click options from settings dataclasses, and parsed options back into the dataclasses.

``@click_options(GatewaySettings, ProcessorSettings)`` adds one option per declared
setting (see :mod:`hopline.settings.spec`), in declaration order; a setting shared by
several classes (``--rabbitmq-url``) appears once. The command then calls
``build(GatewaySettings, kw)``. Every option names its environment variable and shows
its default in ``--help``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from hopline.settings.spec import KEY, SAME, Group, Setting

__all__ = ["build", "click_options", "declared", "environment"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def declared(cls: type) -> dict[str, Setting]:
    """The settings a dataclass declares, by field (or group member) name, in order."""
    found: dict[str, Setting] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(KEY)
        if isinstance(spec, Setting):
            found[f.name] = spec
        elif isinstance(spec, Group):
            found.update(spec.members)
    return found


def _merged(classes: tuple[type, ...]) -> dict[str, Setting]:
    merged: dict[str, Setting] = {}
    for cls in classes:
        for name, spec in declared(cls).items():
            if merged.setdefault(name, spec) is not spec:
                raise TypeError(f"{cls.__name__}.{name} is declared twice with different settings")
    return merged


def _option(name: str, spec: Setting) -> Callable[[F], F]:
    decls = [spec.short] if spec.short else []
    long = spec.option(name)
    decls += [f"{long}/{spec.off_flag}" if spec.off_flag else long, name]
    kwargs: dict[str, Any] = {
        "envvar": spec.envvar(name),
        "show_envvar": True,
        "help": spec.help,
        "show_default": spec.show_default,
        "default": spec.default if spec.cli_default is SAME else spec.cli_default,
    }
    for key in ("multiple", "is_flag", "count", "required"):
        if getattr(spec, key):
            kwargs[key] = True
    for key in ("type", "callback", "metavar"):
        if getattr(spec, key) is not None:
            kwargs[key] = getattr(spec, key)
    if spec.multiple and kwargs["default"] is None:
        kwargs["default"] = ()
    return click.option(*decls, **kwargs)


def click_options(*classes: type) -> Callable[[F], F]:
    """A decorator adding the options of every setting the classes declare."""
    options = [_option(name, spec) for name, spec in _merged(classes).items()]

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def build(cls: type[T], values: Mapping[str, Any], **overrides: Any) -> T:
    """An instance of the settings dataclass ``cls`` from parsed option values.

    Fields without a setting keep their defaults unless given in ``overrides``.

    Raises:
        KeyError: ``values`` lacks a declared option (the command lacks its decorator).
    """
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        spec = f.metadata.get(KEY)
        if isinstance(spec, Setting):
            kwargs[f.name] = spec.value(values[f.name])
        elif isinstance(spec, Group):
            kwargs[f.name] = spec.build(values)
    kwargs.update(overrides)
    return cls(**kwargs)


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return " ".join(str(item) for item in value)
    if isinstance(value, frozenset | set):
        return " ".join(sorted(str(item) for item in value))
    return str(value)


def environment(cls: type, settings: Any) -> dict[str, str]:
    """The environment variables that give a command ``settings`` (an instance of ``cls``).

    The inverse of :func:`build` through the environment: a child process started
    with ``hopline <command>`` and these variables parses the same settings, without
    them on its command line (which ``ps`` shows to every user). Settings that are
    None are left out (the child uses its default, None).
    """
    env: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(KEY)
        value = getattr(settings, f.name)
        if isinstance(spec, Setting):
            pairs = [(f.name, spec, value)]
        elif isinstance(spec, Group):
            pairs = [(n, s, getattr(value, s.attr or n)) for n, s in spec.members.items()]
        else:
            continue
        for name, member, member_value in pairs:
            if member_value is not None:
                env[member.envvar(name)] = _env_value(member_value)
    return env
