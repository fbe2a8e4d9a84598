"""Schema evolution: upcasters turn an old payload into the next version's, on every read.

Adding an optional field keeps the version. Anything else bumps it and registers an upcaster
`(type, from_version) -> (dict -> dict)` here. Golden samples of every version live in
tests/contract/golden/.
"""

from __future__ import annotations

from collections.abc import Callable

Upcaster = Callable[[dict], dict]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UpcastError(ValueError):
    pass


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(function: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in UPCASTERS:
            raise ValueError(f"two upcasters registered for {event_type} v{from_version}")
        UPCASTERS[key] = function
        return function

    return register


def upcast(event_type: str, version: int, target_version: int, data: dict) -> dict:
    while version < target_version:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UpcastError(
                f"{event_type} schema_version {version} cannot be read: no upcaster from "
                f"v{version} to v{version + 1} (current is v{target_version})"
            )
        data = step(data)
        version += 1
    return data


# Members declared bare capability ids in v1; v2 gives each a level 1..5. A v1 member is
# read as "competent" (3): a middle level that neither hides nor overstates them.
V1_CAPABILITY_LEVEL = 3


@upcaster("member.joined", from_version=1)
def member_joined_v1_to_v2(data: dict) -> dict:
    upgraded = dict(data)
    upgraded["capabilities"] = [
        {"capability": capability, "level": V1_CAPABILITY_LEVEL}
        for capability in data.get("capabilities", [])
    ]
    return upgraded
