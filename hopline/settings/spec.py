"""A setting, declared once: the dataclass field, the command-line option and the env var.

A settings dataclass (``GatewaySettings``, ``ProcessorSettings``, ``TuiSettings``,
``LoadSettings``...) declares each of its user-facing fields with :func:`setting`::

    @dataclass(frozen=True, slots=True)
    class GatewaySettings:
        port: int = setting(8000, "Listen port.", type=click.IntRange(0, 65535))

That one line is the whole declaration: the field's name and type, its default, the
``--port`` option (with its help and type) and the ``HOPLINE_PORT`` environment
variable. :mod:`hopline.settings.options` turns the declarations into click options
and parsed options back into the dataclass; the configuration reference in
``docs/configuration.md`` is generated from the same options.

The environment-variable rule (:func:`env_var`): ``HOPLINE_<OPTION>``, where
``<OPTION>`` is the long option without its dashes, upper-cased, ``-`` becoming ``_``.
When two commands have an option of the same name that means different things
(``hopline send --timeout`` and ``hopline loadtest --timeout``), each is scoped to its
command: ``HOPLINE_<COMMAND>_<OPTION>``. ``RABBITMQ_URL`` keeps its usual name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["KEY", "Group", "Setting", "env_var", "setting"]

KEY = "hopline.setting"  # the key of a Setting or Group in a dataclass field's metadata


class _Same:
    def __repr__(self) -> str:
        return "SAME"


SAME: Any = _Same()  # Setting.cli_default: the command line's default is the field's default


def env_var(option: str, command: str | None = None) -> str:
    """The environment variable of a long option: ``--max-batch`` -> ``HOPLINE_MAX_BATCH``.

    With ``command`` (an option whose name other commands use with another meaning):
    ``HOPLINE_<COMMAND>_<OPTION>``.
    """
    name = option.lstrip("-").replace("-", "_").upper()
    return f"HOPLINE_{command.upper()}_{name}" if command else f"HOPLINE_{name}"


@dataclass(frozen=True, slots=True, eq=False)
class Setting:
    """One user-facing setting; see the module docstring.

    Attributes:
        default: the dataclass field's default, also the option's (see ``cli_default``).
        help: one line for ``--help`` and the configuration reference.
        type: a click parameter type (``click.IntRange(min=1)``, ``click.Choice(...)``);
            None lets click infer it from the default.
        flag: the long option when it is not ``--<field-name>`` (``--allowed-origin``
            for the repeatable ``allowed_origins``).
        short: a short alias (``-c``).
        off_flag: makes a boolean an on/off pair (``--persistent/--transient``).
        command: scopes the environment variable to one command (see :func:`env_var`).
        env: a fixed environment variable instead of the rule's (only ``RABBITMQ_URL``).
        attr: in a :class:`Group`, the attribute of the group's class it fills.
        multiple, is_flag, count, required, metavar: as in ``click.option``.
        show_default: as in ``click.option`` (a string describes a computed default).
        callback: a click callback that validates (``BadParameter`` is a usage error).
        convert: turns the parsed value into the field's value (e.g. origins to a set).
        cli_default: the command line's default when it differs from the library's
            (``loadtest --procs``: the CPU count on the command line, 1 in the library).
    """

    default: Any
    help: str
    type: Any = None
    flag: str | None = None
    short: str | None = None
    off_flag: str | None = None
    command: str | None = None
    env: str | None = None
    attr: str | None = None
    multiple: bool = False
    is_flag: bool = False
    count: bool = False
    required: bool = False
    metavar: str | None = None
    show_default: bool | str = True
    callback: Callable[..., Any] | None = None
    convert: Callable[[Any], Any] | None = None
    cli_default: Any = SAME

    def option(self, name: str) -> str:
        """The long option of the setting stored in field ``name``."""
        return self.flag or "--" + name.replace("_", "-")

    def envvar(self, name: str) -> str:
        """The environment variable of the setting stored in field ``name``."""
        return self.env or env_var(self.option(name), self.command)

    def value(self, parsed: Any) -> Any:
        """The field's value for a parsed option value."""
        return self.convert(parsed) if self.convert is not None else parsed

    def field(self, *, repr: bool = True) -> Any:
        """A dataclass field carrying this setting (its default and its metadata).

        ``repr=False`` keeps a secret out of the settings' repr.
        """
        return dataclasses.field(default=self.default, repr=repr, metadata={KEY: self})


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field that is also an option and an environment variable.

    ``setting(default, help, **kwargs)`` is ``Setting(default, help, **kwargs).field()``.
    """
    return Setting(default, help, **kwargs).field()


@dataclass(frozen=True, slots=True, eq=False)
class Group:
    """Several settings that fill one field holding another dataclass.

    ``topology: QueueTopology = TOPOLOGY.field()`` makes ``--input-queue``,
    ``--queue-type``... options whose values build the :class:`QueueTopology`
    (which lives in the wire contract and knows nothing of options).

    Attributes:
        cls: the class the members' values are passed to (by ``attr`` or name).
        members: option field-name -> setting.
    """

    cls: type
    members: Mapping[str, Setting]

    def field(self) -> Any:
        """A dataclass field holding ``cls()`` by default, carrying the group."""
        return dataclasses.field(default_factory=self.cls, metadata={KEY: self})

    def build(self, values: Mapping[str, Any]) -> Any:
        """An instance of ``cls`` from parsed option values keyed by member name."""
        return self.cls(
            **{s.attr or name: s.value(values[name]) for name, s in self.members.items()}
        )
