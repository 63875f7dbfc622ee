"""Kernel settings: :class:`Sysctl` and :func:`ip_forward` (sysctl(8); Documentation/networking/ip-sysctl.rst)."""

from __future__ import annotations

import attrs

from . import rules
from .commands import Command, Step, sysctl_w
from .render import RenderContext


def _int_to_text(value: object) -> object:
    """attrs converter: an int (not a bool) to its decimal text; anything else is left to the validator."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _sysctl_value(obj: "Sysctl", field: str, value: object) -> None:
    if not isinstance(value, str) or not value or not value.isprintable() or "\n" in value:
        raise rules.ValidationError(rules.describe(obj), field, "a sysctl value is printable text (or an int)", value)
    boolean = obj.key.endswith((".ip_forward", ".forwarding")) if isinstance(obj.key, str) else False
    if boolean and value not in ("0", "1"):
        raise rules.ValidationError(rules.describe(obj), field, f"{obj.key} is 0 or 1", value)


@attrs.frozen
class Sysctl:
    """A per-namespace kernel setting under ``net.ipv4``/``net.ipv6`` (sysctl(8)).

    Attributes:
        key: e.g. ``"net.ipv4.ip_forward"``.
        value: the value to set, as text.
        default: the value ``down`` restores when the value before ``up`` is
            not known (for ``net.ipv4.ip_forward``, the kernel default ``"0"``;
            Documentation/networking/ip-sysctl.rst).
        netns: where to set it (None: the host).
    """

    key: str = attrs.field(validator=rules.sysctl_key)
    value: str = attrs.field(converter=_int_to_text)

    @value.validator
    def _check_value(self, attribute: attrs.Attribute, value: str) -> None:
        _sysctl_value(self, "value", value)

    default: str = attrs.field(default="0", converter=_int_to_text)

    @default.validator
    def _check_default(self, attribute: attrs.Attribute, value: str) -> None:
        _sysctl_value(self, "default", value)

    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)

    @property
    def name(self) -> str:
        return self.key

    @property
    def step_key(self) -> str:
        return f"sysctl {self.key}@{self.netns or 'host'}"

    def restore_command(self, value: str) -> Command:
        """``sysctl -w KEY=VALUE`` that puts ``value`` back."""
        return sysctl_w(self.key, value, netns=self.netns, step=self.step_key)

    def steps(self, ctx: RenderContext, covered_by: str | None = None) -> list[Step]:
        k = self.step_key
        forwarding = self.key == "net.ipv4.ip_forward"
        if self.key == IPV6_FORWARDING:
            why = (("With IPv6 forwarding on inside " + self.netns + ", it routes IPv6 packets between its links "
                    "(a new namespace starts with it off). The namespace takes the setting with it.")
                   if self.netns is not None else
                   "With net.ipv6.conf.all.forwarding=1 the kernel routes IPv6 packets between its links, so what "
                   "the containers send to their IPv6 gateway can leave through another link. It also makes every "
                   "interface with accept_ra=1 ignore router advertisements (ip-sysctl.rst). Taking the network "
                   f"down puts back the value it had before (else {self.default}).")
        elif forwarding and self.netns is not None:
            why = (f"With ip_forward=1 inside {self.netns}, it routes packets between its own links: a router. "
                   "A packet that arrives on one link for a subnet behind another leaves there with its TTL one "
                   "lower (a new namespace starts with forwarding off, and drops such packets). "
                   "The namespace takes the setting with it when it is deleted.")
        elif forwarding:
            why = ("With ip_forward=1 the kernel routes packets between its links, so what the "
                   "containers send to their gateway can leave through another link. "
                   f"Taking the network down puts back the value it had before (else {self.default}).")
        else:
            why = f"Set {self.key}; taking the network down puts back the value it had before (else {self.default})."
        title = (("turn on IP forwarding" + (f" in {self.netns} (a router)" if self.netns else ""))
                 if (self.key, self.value) == ("net.ipv4.ip_forward", "1") else
                 ("turn on IPv6 forwarding" + (f" in {self.netns} (a router)" if self.netns else ""))
                 if (self.key, self.value) == (IPV6_FORWARDING, "1") else f"set {self.key}={self.value}")
        return [
            Step(
                key=k,
                title=title,
                why=why,
                up=(sysctl_w(self.key, self.value, netns=self.netns, step=k),),
                down=(self.restore_command(self.default),),
                covered_by=covered_by,
            )
        ]


def ip_forward(netns: str | None = None) -> Sysctl:
    """The ``net.ipv4.ip_forward=1`` sysctl (kernel default 0; Documentation/networking/ip-sysctl.rst)."""
    return Sysctl("net.ipv4.ip_forward", "1", default="0", netns=netns)


IPV6_FORWARDING = "net.ipv6.conf.all.forwarding"
"""IPv6 forwarding on every interface (kernel default 0; Documentation/networking/ip-sysctl.rst, conf/all/forwarding)."""


def ip6_forward(netns: str | None = None) -> Sysctl:
    """The ``net.ipv6.conf.all.forwarding=1`` sysctl (kernel default 0; ip-sysctl.rst).

    In the host it has a side effect a user may not expect: an interface with
    ``accept_ra=1`` (the default) ignores router advertisements while
    forwarding is on (ip-sysctl.rst, accept_ra: "Functional default: enabled
    if local forwarding is disabled"), so a host on SLAAC can lose its IPv6
    default route (:data:`ACCEPT_RA_ADVICE`).
    """
    return Sysctl(IPV6_FORWARDING, "1", default="0", netns=netns)


ACCEPT_RA_ADVICE = (
    "net.ipv6.conf.all.forwarding=1 in the host: while it is on, every interface with accept_ra=1 (the default) "
    "ignores router advertisements (Documentation/networking/ip-sysctl.rst, accept_ra: \"Functional default: "
    "enabled if local forwarding is disabled\"), so a host that gets its IPv6 default route by SLAAC (a laptop) "
    "may lose it; set accept_ra=2 on that interface (`sysctl -w net.ipv6.conf.IFACE.accept_ra=2`) to keep it")
"""The advice a network that turns IPv6 forwarding on in the host carries (``Network.advice``)."""
