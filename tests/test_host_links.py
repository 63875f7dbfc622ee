"""Fast tier: a bare link's end in the host is a host link like a bridge: their subnets do not overlap."""

from __future__ import annotations

import pytest

from bridgenet import config
from bridgenet.errors import ValidationError

BRIDGE = '''
name = "hl"
[[bridges]]
name = "tb0"
address = "10.50.0.1/24"
address6 = "fd00:50::1/64"
[[containers]]
netns = "a"
address = "10.50.0.10"
[[links]]
ends = [{{ name = "h1", {host} }}, {{ netns = "b", name = "to-h", {far} }}]
'''


@pytest.mark.parametrize("host, far, subnet", [
    ('address = "10.50.0.100/24"', 'address = "10.50.0.101/24"', "10.50.0.0/24"),
    ('address6 = "fd00:50::100/64"', 'address6 = "fd00:50::101/64"', "fd00:50::/64"),
])
def test_a_host_end_on_a_bridges_subnet_is_refused(host, far, subnet):
    """Seen: accepted, and the host had two connected routes for 10.50.0.0/24 (on h1 and tb0)."""
    with pytest.raises(ValidationError) as ei:
        config.from_dict(config.tomllib.loads(BRIDGE.format(host=host, far=far)))
    assert "the subnets of two links do not overlap" in ei.value.rule
    assert subnet in ei.value.rule and "h1" in ei.value.rule and "tb0" in ei.value.rule


def test_a_host_end_on_its_own_subnet_is_fine():
    net = config.from_dict(config.tomllib.loads(BRIDGE.format(host='address = "10.99.0.1/30"',
                                                              far='address = "10.99.0.2/30"')))
    assert "ip addr add 10.99.0.1/30 dev h1" in [c.shell() for c in net.up_commands()]
