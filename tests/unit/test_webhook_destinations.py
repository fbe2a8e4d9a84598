"""Which webhook URLs a shared deployment refuses before asking any resolver."""

from __future__ import annotations

import pytest

from services.notifications.destinations import DestinationRefused, check_registered_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hooks",
        "http://localhost/hooks",
        "http://api.localhost/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.1.20/hooks",
        "https://172.16.0.1/hooks",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://[::1]:8080/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://[fd00::1]/hooks",
        "http://0.0.0.0/hooks",
        "http://100.64.0.1/hooks",  # carrier-grade NAT
    ],
)
def test_addresses_inside_a_network_are_refused_with_the_reason(url):
    with pytest.raises(DestinationRefused, match="may not reach it"):
        check_registered_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://erp.mage.example/mf-hooks",  # a name: checked again when delivering
        "https://93.184.215.14/hooks",
        "https://[2a00:1450:4001:82a::200e]/hooks",
    ],
)
def test_public_addresses_and_names_pass_registration(url):
    check_registered_url(url)
