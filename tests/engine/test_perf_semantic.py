"""The vectorized semantic scan of the registry and the router's fallback give the same answers as before.

The reference is the former implementation: every pattern scored by its best
example, every hit built, all sorted by (score descending, priority
descending, name), then cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from eng_helpers import eng_definition

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.engine.registry import PatternRegistry, _State, _top_hits
from pattern_service.engine.tools import SemanticHit
from pattern_service.store.base import PatternDefinitionStore

DIM = 4


class _NoEmbedder:
    model_id = "none"
    dimension = DIM

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        raise AssertionError("not used")


def _state(defs: list[PatternDefinition], vectors: dict[str, npt.NDArray[np.float32]]) -> _State:
    registry = PatternRegistry(cast(PatternDefinitionStore, None), _NoEmbedder(), (), load_defaults=False)
    registry._vectors = dict(vectors)
    return registry._build(defs, 1)


def _reference(state: _State, sims: npt.NDArray[np.float32], limit: int, types: Sequence[Any]) -> list[SemanticHit]:
    hits = []
    for k, owner in enumerate(state.owners):
        start = int(state.starts[k])
        end = int(state.starts[k + 1]) if k + 1 < len(state.starts) else len(state.examples)
        arg = start + int(np.argmax(sims[start:end]))
        hits.append(SemanticHit(owner, float(sims[start:end].max()), state.examples[arg]))
    hits.sort(key=lambda h: (-h.score, -h.definition.priority, h.definition.name))
    return [h for h in hits if not types or h.definition.pattern_type in types][:limit]


@pytest.mark.parametrize("examples_per_pattern", [1, 3])
def test_top_hits_equal_the_full_sort_including_ties_and_type_filters(examples_per_pattern: int) -> None:
    rng = np.random.default_rng(7)
    types = [PatternType.INFRASTRUCTURE, PatternType.MEMORY, PatternType.HYBRID]
    defs, vectors = [], {}
    for i in range(60):
        examples = tuple(f"example {i} {j}" for j in range(examples_per_pattern if i % 7 else 1))
        for e in examples:  # few distinct values: many exact score ties across patterns and examples
            vectors[e] = rng.integers(-2, 3, DIM).astype(np.float32)
        meta = {"operation": "recall"} if types[i % 3] is PatternType.MEMORY else {"tool": "calculate"}
        defs.append(
            eng_definition(
                f"p{i:02d}",
                pattern_type=types[i % 3],
                priority=int(rng.integers(0, 3)),
                examples=examples,
                metadata=meta,
            )
        )
    defs.append(eng_definition("no_examples"))  # never a semantic hit
    state = _state(defs, vectors)
    assert len(state.owners) == 60
    for q in range(20):
        sims = state.matrix @ rng.integers(-2, 3, DIM).astype(np.float32)
        for limit in (1, 5, 10, 59, 60, 100):
            for wanted in ((), (PatternType.MEMORY,), (PatternType.HYBRID, PatternType.INFRASTRUCTURE)):
                assert _top_hits(state, sims, limit, wanted) == _reference(state, sims, limit, wanted), (q, limit)


def test_top_hits_of_an_empty_selection() -> None:
    state = _state([eng_definition("a", examples=("x",))], {"x": np.ones(DIM, dtype=np.float32)})
    assert _top_hits(state, state.matrix @ np.ones(DIM, dtype=np.float32), 5, (PatternType.MEMORY,)) == []


async def test_semantic_neighbours_filters_types_before_the_limit(eng_build: Any) -> None:
    engine = await eng_build()
    registry: PatternRegistry = engine.registry
    everything = await registry.semantic_neighbours("recall memories about deploys", limit=100)
    memory = await registry.semantic_neighbours(
        "recall memories about deploys", limit=2, pattern_types=(PatternType.MEMORY,)
    )
    assert memory == [h for h in everything if h.definition.pattern_type is PatternType.MEMORY][:2]
    assert await registry.semantic_neighbours("anything", limit=0) == []
