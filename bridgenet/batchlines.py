"""One bridgenet command as a line of a batch file: ``ip -batch``, ``iptables-restore``, ``sysctl -w`` words.

Facts this relies on (iproute2 6.1, iptables 1.8.9, see KERNEL-NOTES):
``ip -batch`` reads ``#`` anywhere on a line as the start of a comment and
a word that starts with ``'`` or ``"`` as quoted up to the same quote
(lib/utils.c ``getcmdline``/``makeargs``). ``iptables-restore`` reads
``"..."`` with backslash escapes as one argument (xshared.c
``add_param_to_argv``). A command that cannot be written so raises
:class:`bridgenet.errors.ValidationError`, before anything runs.
"""

from __future__ import annotations

import re

from .commands import Command
from .errors import ValidationError

_IPTABLES_OPS = {"-A": "-A", "--append": "-A", "-D": "-D", "--delete": "-D", "-I": "-I", "--insert": "-I"}
_IPTABLES_CHAIN_OPS = {"-N": "-N", "--new-chain": "-N", "-X": "-X", "--delete-chain": "-X"}



def _unbatchable(command: Command, arg: str, why: str) -> ValidationError:
    return ValidationError(f"Command {command.shell()}", "args", why, arg)


_PLAIN_LINE = re.compile(r"[^#\n\0\t\r\v\f'\"]*").fullmatch
"""Matches a line with no character that makes ``ip_batch_line`` quote a word or refuse it, but space."""


_PLAIN_TEXT = re.compile(r"[^#\0\t\r\v\f'\"]*").fullmatch
"""The same for a batch file of such lines (newlines allowed)."""


def ip_batch_line(command: Command) -> str:
    """``command``'s arguments as one line of an ``ip -batch`` file (no trailing newline).

    A word with whitespace, or empty, or starting with a quote, is put in
    quotes; ``ip`` has no escapes inside quotes (lib/utils.c ``makeargs``).

    Raises:
        ValidationError: an argument holds ``#`` (``ip`` cuts the line
            there), a newline or NUL, or needs quoting but holds both kinds
            of quote.
    """
    args = command.args
    try:
        line = " ".join(args)
    except TypeError:  # not all text: the loop below says how
        line = None
    # Fast path: no argument needs quoting or is refused (none is empty, none holds a space: the
    # line has exactly the spaces that join the words), so the line is the words as they are.
    if line is not None and _PLAIN_LINE(line) is not None and line.count(" ") == len(args) - 1 \
            and "" not in args:
        return line
    return _quoted_line(command)


def _quoted_line(command: Command) -> str:
    """:func:`ip_batch_line`, word by word."""
    words = []
    for a in command.args:
        if "#" in a or "\n" in a or "\0" in a:
            raise _unbatchable(command, a, "an ip -batch line cannot carry '#' (a comment), a newline or NUL")
        if a and a[0] not in "'\"" and not any(ch in a for ch in " \t\r\v\f"):
            words.append(a)
        elif "'" not in a:
            words.append(f"'{a}'")
        elif '"' not in a:
            words.append(f'"{a}"')
        else:
            raise _unbatchable(command, a, "an ip -batch word cannot hold both ' and \" when it needs quoting")
    return " ".join(words)


def _restore_word(command: Command, a: str) -> str:
    if "\n" in a or "\0" in a:
        raise _unbatchable(command, a, "an iptables-restore line cannot carry a newline or NUL")
    if a and not any(ch in a for ch in ' \t\r\v\f"\\'):
        return a
    return '"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'


def iptables_restore_rule(command: Command) -> tuple[str, str] | None:
    """``(table, line)`` for ``iptables [-t TABLE] -A|-D|-I CHAIN ...`` or ``-N|-X CHAIN``, else None.

    ``iptables -t nat -A POSTROUTING -s 10.201.0.0/24 -j MASQUERADE`` gives
    ``("nat", "-A POSTROUTING -s 10.201.0.0/24 -j MASQUERADE")``; the table
    defaults to ``filter`` (iptables(8)). Only the forms above translate
    (``-t`` first if present); None means "run it as itself".

    Raises:
        ValidationError: an argument holds a newline or NUL.
    """
    if command.tool != "iptables":
        return None
    return _restore_rule(command)


def ip6tables_restore_rule(command: Command) -> tuple[str, str] | None:
    """:func:`iptables_restore_rule` for ``ip6tables`` (an ``ip6tables-restore`` line; ip6tables(8))."""
    if command.tool != "ip6tables":
        return None
    return _restore_rule(command)


def _restore_rule(command: Command) -> tuple[str, str] | None:
    args = list(command.args)
    table = "filter"
    if len(args) >= 2 and args[0] in ("-t", "--table"):
        table = args[1]
        args = args[2:]
    if len(args) == 2 and args[0] in _IPTABLES_CHAIN_OPS and not args[1].startswith("-"):
        return table, f"{_IPTABLES_CHAIN_OPS[args[0]]} {_restore_word(command, args[1])}"
    if len(args) < 2 or args[0] not in _IPTABLES_OPS or args[1].startswith("-"):
        return None
    if any(a in ("-t", "--table", "-w", "--wait", "-W", "--wait-interval") for a in args[2:]):
        return None
    words = [_IPTABLES_OPS[args[0]], *(_restore_word(command, a) for a in args[1:])]
    return table, " ".join(words)


def _sysctl_settings(command: Command) -> list[str] | None:
    """The ``KEY=VALUE`` words of ``sysctl -w KEY=VALUE [...]``, else None (sysctl(8))."""
    if command.tool != "sysctl" or len(command.args) < 2 or command.args[0] != "-w":
        return None
    settings = list(command.args[1:])
    if not all("=" in s and not s.startswith("-") for s in settings):
        return None
    return settings

