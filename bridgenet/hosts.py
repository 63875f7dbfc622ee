"""The hosts of a network that spans several machines (:class:`HostSpec`), and the VNI rule (:func:`default_vni`).

A host is where one part of the network is built: by bridgenet on this
machine (no ``ssh``), or over OpenSSH on another (``ssh = "USER@HOST"``).
Its ``underlay`` is the address its VXLAN packets leave from and the other
hosts send theirs to; by default the host part of ``ssh``, which must then
be an IP address (a name could resolve differently on each host).

The SSH settings (``port``, ``identity``, ``ssh_config``, ``options``) are
carried for the runner that reaches the host (ssh(1): ``-p``, ``-i``,
``-F``, ``-o``); :meth:`HostSpec.ssh_args` gives them as ssh(1) arguments.
Files are not looked at here: a dry-run prints the same wherever it runs.
"""

from __future__ import annotations

import re
import zlib
from ipaddress import IPv4Address, IPv6Address, ip_address

import attrs

from . import rules
from .errors import ValidationError
from .runners.ssh import SSH_OPTION
from .vxlan import MAX_VNI

_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def default_vni(name: str) -> int:
    """The VNI of a network that gives none: ``zlib.crc32(NAME as UTF-8) % 2**24``, and 1 if that is 0.

    Deterministic (CRC-32 of ISO-HDLC / zlib, the same on every machine and
    Python), so every host and every run derive the same VNI from the name;
    ``stretch`` gives 16056067. Two networks whose VNIs collide on a host fail
    there with "File exists" on their VXLAN devices (named ``vxVNI``):
    give one of them ``vni``.
    """
    return zlib.crc32(name.encode("utf-8")) % (MAX_VNI + 1) or 1


def _host_name(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, str) or _HOST_NAME.fullmatch(value) is None:
        raise ValidationError(rules.describe(instance), attribute.name, "a host's name is 1-64 of A-Za-z0-9_.- "
                              "starting with a letter or digit, as in h1", value)


def _ssh(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or value.startswith("-") or any(c.isspace() for c in value) \
            or value.endswith("@"):
        raise ValidationError(rules.describe(instance), attribute.name, "ssh is a destination [USER@]HOST (no "
                              "spaces, not starting with '-'), as in root@198.51.100.11", value)


def _opt_path(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value or "\0" in value):
        raise ValidationError(rules.describe(instance), attribute.name, f"{attribute.name} is a file's path "
                              "(text)", value)


def _port(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535):
        raise ValidationError(rules.describe(instance), attribute.name, "an SSH port is a whole number from 1 to "
                              "65535", value)


def _options(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, tuple):
        raise ValidationError(rules.describe(instance), attribute.name, "options is a list of ssh -o options, "
                              'as in ["StrictHostKeyChecking=no"]', value)
    for i, o in enumerate(value):
        if not isinstance(o, str) or SSH_OPTION.fullmatch(o) is None:
            raise ValidationError(rules.describe(instance), f"{attribute.name}[{i}]", "an ssh -o option is "
                                  "Keyword=value (ssh_config(5)), as in StrictHostKeyChecking=no", o)


def _to_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def ssh_host(ssh: str) -> str:
    """The host part of an ssh destination: ``root@198.51.100.11`` -> ``198.51.100.11`` (``[2001:db8::1]``
    without its brackets)."""
    host = ssh.rpartition("@")[2]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


@attrs.frozen
class HostSpec:
    """One host of a multi-host network (the file's ``[[hosts]]``).

    Attributes:
        name: the host's name in the file, e.g. ``"h1"`` (containers say ``host = "h1"``).
        ssh: where its commands run, an ssh(1) destination ``[USER@]HOST``;
            None: this machine (no SSH).
        underlay: the address its VXLAN packets leave from, IPv4 or IPv6;
            None: the host part of ``ssh`` (then an IP address). Required for
            the local host.
        port: the SSH port (``ssh -p``); None: ssh's default.
        identity: a private key file (``ssh -i``); None: ssh's default.
        ssh_config: an ssh_config(5) file used instead of ``~/.ssh/config`` (``ssh -F``).
        options: ssh -o options, e.g. ``("StrictHostKeyChecking=no",)``.

    Raises:
        ValidationError: a bad value, or no usable underlay address.
    """

    name: str = attrs.field(validator=_host_name)
    ssh: str | None = attrs.field(default=None, validator=_ssh)
    underlay: IPv4Address | IPv6Address | None = attrs.field(default=None)
    port: int | None = attrs.field(default=None, validator=_port, kw_only=True)
    identity: str | None = attrs.field(default=None, validator=_opt_path, kw_only=True)
    ssh_config: str | None = attrs.field(default=None, validator=_opt_path, kw_only=True)
    options: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_options, kw_only=True)

    def __attrs_post_init__(self) -> None:
        value = self.underlay
        if value is None:
            if self.ssh is None:
                raise ValidationError(rules.describe(self), "underlay", "a local host (no ssh) gives its underlay "
                                      "address, as in underlay = \"198.51.100.11\"")
            value = ssh_host(self.ssh)
            try:
                value = ip_address(value)
            except ValueError:
                raise ValidationError(rules.describe(self), "underlay", "give underlay = ADDRESS: the host part of "
                                      "ssh is no IP address (a name may resolve differently on each host)",
                                      value) from None
        elif isinstance(value, str):
            try:
                value = ip_address(value)
            except ValueError:
                raise ValidationError(rules.describe(self), "underlay", "an underlay address is an IPv4 or IPv6 "
                                      "address, as in 198.51.100.11", value) from None
        if not isinstance(value, (IPv4Address, IPv6Address)):
            raise ValidationError(rules.describe(self), "underlay", "an underlay address is an IPv4 or IPv6 "
                                  "address, as in 198.51.100.11", value)
        if value.is_unspecified or value.is_multicast or value.is_loopback:
            raise ValidationError(rules.describe(self), "underlay", "an underlay address is a unicast address "
                                  "of the host (not unspecified, loopback or multicast)", str(value))
        object.__setattr__(self, "underlay", value)
        if self.ssh is None:
            for key in ("port", "identity", "ssh_config"):
                if getattr(self, key) is not None:
                    raise ValidationError(rules.describe(self), key, f"{key} is an SSH setting: only for a host "
                                          "with ssh", getattr(self, key))
            if self.options:
                raise ValidationError(rules.describe(self), "options", "options are SSH settings: only for a "
                                      "host with ssh", list(self.options))

    @property
    def local(self) -> bool:
        """True for this machine (no ``ssh``)."""
        return self.ssh is None

    def header(self) -> str:
        """The dry-run's line before this host's transcript: ``# host h1 (root@198.51.100.11)``, or
        ``# host h1 (local)``."""
        return f"# host {self.name} ({self.ssh if self.ssh is not None else 'local'})"

    def ssh_args(self) -> tuple[str, ...]:
        """The ssh(1) options of this host's settings, before the destination: ``-p PORT``, ``-i FILE``,
        ``-F FILE``, then ``-o OPTION`` each (empty for the local host), as its SshTarget renders them."""
        return () if self.ssh is None else self.ssh_target().settings_args()

    def ssh_target(self):  # noqa: ANN201 (an SshTarget: runners.ssh imported on use)
        """The :class:`~bridgenet.runners.ssh.SshTarget` of these settings; ValidationError for the local host."""
        if self.ssh is None:
            raise ValidationError(f"host {self.name}", "ssh", "the local host is not reached over ssh", None)
        from .runners.ssh import SshTarget

        return SshTarget(self.ssh, port=self.port, identity=self.identity, config=self.ssh_config,
                         options=self.options)
