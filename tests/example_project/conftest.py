"""Fixtures of this project, made with bridgenet's fixture factories.

bridgenet's plugin already gives every test bridgenet_sandbox, bridgenet_network,
bridgenet_tutorial, netns_run, netns_process, bridgenet_faults and bridgenet_reach.
Here the project adds its own network, built once per test module in a sandbox of
its own that also has an "internet" (the upstream namespace, 198.51.100.1, RFC 5737).
"""

from bridgenet import Container, bridge_network
from bridgenet.testing import factories


def shop():
    """The shop's network: web and db on the bridge shop0, gateway 10.88.0.1, NAT to upstream."""
    return bridge_network(
        "shop",
        [Container("web", "10.88.0.10"), Container("db", "10.88.0.20")],
        bridge="shop0",
        gateway="10.88.0.1/24",
    )


shop_sandbox = factories.sandbox(scope="module", upstream=True)
shop_network = factories.network(shop, sandbox="shop_sandbox", scope="module")
shop_reach = factories.reach(sandbox="shop_sandbox")

