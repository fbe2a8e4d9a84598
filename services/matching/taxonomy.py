"""The capability taxonomy: which capabilities are narrower than which (pure, from data).

A request for a broader term (`fabrication`) is served by members with a narrower capability
(`laser-cutting`), at a lower score per step up the hierarchy. A capability that the taxonomy
does not know is its own concept with no broader terms: it matches only itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources


class TaxonomyError(ValueError):
    """The taxonomy data is inconsistent (unknown broader term, cycle)."""


@dataclass(frozen=True, slots=True)
class Taxonomy:
    version: str
    # concept -> its broader concepts (direct parents)
    broader: Mapping[str, tuple[str, ...]]
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping) -> Taxonomy:
        concepts = data["concepts"]
        broader = {cid: tuple(spec.get("broader", ())) for cid, spec in concepts.items()}
        for cid, parents in broader.items():
            for parent in parents:
                if parent not in broader:
                    raise TaxonomyError(f"{cid}: broader term {parent!r} is not a concept")
        taxonomy = cls(
            version=str(data["version"]),
            broader=broader,
            labels={cid: spec.get("label", cid) for cid, spec in concepts.items()},
        )
        for cid in broader:
            taxonomy.ancestors(cid)  # raises on a cycle
        return taxonomy

    def ancestors(self, capability: str) -> dict[str, int]:
        """Every broader term of `capability` with its distance (1 = direct), itself at 0."""
        found = {capability: 0}
        frontier = [capability]
        depth = 0
        while frontier:
            depth += 1
            following = []
            for concept in frontier:
                for parent in self.broader.get(concept, ()):
                    if parent == capability:
                        raise TaxonomyError(f"{capability}: broader terms form a cycle")
                    if parent not in found:
                        found[parent] = depth
                        following.append(parent)
            frontier = following
            if depth > len(self.broader) + 1:
                raise TaxonomyError(f"{capability}: broader terms form a cycle")
        return found

    def steps(self, member_capability: str, requested: str) -> int | None:
        """How many steps `requested` is above `member_capability` (0: the same), None if
        the member's capability does not serve the request."""
        return self.ancestors(member_capability).get(requested)

    def label(self, capability: str) -> str:
        return self.labels.get(capability, capability)


def load_taxonomy() -> Taxonomy:
    """The taxonomy shipped in contracts/capabilities.json."""
    text = resources.files("contracts").joinpath("capabilities.json").read_text()
    return Taxonomy.from_data(json.loads(text))
