"""The vectorized hybrid scan of the registry gives the same answers as a plain per-pattern loop.

The reference scores every pattern one by one with the documented formula
(:mod:`pattern_service.engine.scoring`), builds every candidate, sorts all of
them by (score descending, registry order) and cuts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from eng_helpers import eng_definition

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.engine import scoring
from pattern_service.engine.registry import PatternRegistry
from pattern_service.engine.scoring import Candidate, ScoringModel

DIM = 4


def _model(defs: list[PatternDefinition], vectors: dict[str, npt.NDArray[np.float32]]) -> ScoringModel:
    ordered = sorted(defs, key=lambda d: (-d.priority, d.name))
    return ScoringModel.build(ordered, vectors, DIM)


def _reference(
    model: ScoringModel, vectors: dict[str, npt.NDArray[np.float32]], q: npt.NDArray[np.float32], text: str,
    limit: int, types: Sequence[Any],
) -> list[Candidate]:  # fmt: skip
    lexical = model.lexical.scores(text)
    out = []
    for k, owner in enumerate(model.owners):
        own = [e for e in owner.examples if e in vectors]
        sims = [float(vectors[e] @ q) for e in own]
        mean = np.mean([vectors[e] for e in own], axis=0)
        centroid = mean / np.linalg.norm(mean) if np.linalg.norm(mean) > 0 else mean
        dense = (1 - scoring.CENTROID_WEIGHT) * max(sims) + scoring.CENTROID_WEIGHT * float(centroid @ q)
        hybrid = min(1.0, max(0.0, (1 - scoring.LEXICAL_WEIGHT) * dense + scoring.LEXICAL_WEIGHT * float(lexical[k])))
        best = own[int(np.argmax(sims))]
        out.append((k, Candidate(owner, hybrid, dense, float(lexical[k]), best)))
    out.sort(key=lambda kc: (-round(kc[1].score, 5), kc[0]))
    return [c for _, c in out if not types or c.definition.pattern_type in types][:limit]


@pytest.mark.parametrize("examples_per_pattern", [1, 3])
def test_top_candidates_equal_the_full_sort_including_type_filters(examples_per_pattern: int) -> None:
    rng = np.random.default_rng(7)
    types = [PatternType.INFRASTRUCTURE, PatternType.MEMORY, PatternType.HYBRID]
    words = ["deploy", "cache", "redis", "health", "notes", "latency"]
    defs, vectors = [], {}
    for i in range(60):
        examples = tuple(f"{words[(i + j) % 6]} example {i} {j}" for j in range(examples_per_pattern if i % 7 else 1))
        for e in examples:
            v = rng.normal(size=DIM).astype(np.float32)
            vectors[e] = v / np.linalg.norm(v)
        meta = {"operation": "recall"} if types[i % 3] is PatternType.MEMORY else {"tool": "calculate"}
        defs.append(
            eng_definition(
                f"p{i:02d}", pattern_type=types[i % 3], priority=int(rng.integers(0, 3)), examples=examples,
                metadata=meta,
            )
        )  # fmt: skip
    defs.append(eng_definition("no_examples"))  # never a candidate
    model = _model(defs, vectors)
    assert len(model.owners) == 60
    for q in range(10):
        v = rng.normal(size=DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        text = f"{words[q % 6]} {words[(q + 2) % 6]}"
        for limit in (1, 5, 59, 60, 100):
            for wanted in ((), (PatternType.MEMORY,), (PatternType.HYBRID, PatternType.INFRASTRUCTURE)):
                got = model.top(v, text, limit, wanted)[0]
                want = _reference(model, vectors, v, text, limit, wanted)
                assert [c.definition.name for c in got] == [c.definition.name for c in want], (q, limit)
                for g, w in zip(got, want, strict=True):
                    assert g.score == pytest.approx(w.score, abs=1e-5)
                    assert g.example == w.example


def test_top_of_an_empty_selection_and_the_candidates_asked_for() -> None:
    model = _model([eng_definition("a", examples=("x",))], {"x": np.ones(DIM, dtype=np.float32) / 2})
    ranked, extra = model.top(np.ones(DIM, dtype=np.float32) / 2, "x", 5, (PatternType.MEMORY,), also=("a", "b"))
    assert ranked == []
    assert set(extra) == {"a"}  # "b" has no examples


async def test_semantic_neighbours_filters_types_before_the_limit(eng_build: Any) -> None:
    engine = await eng_build()
    registry: PatternRegistry = engine.registry
    everything = await registry.semantic_neighbours("recall memories about deploys", limit=100)
    memory = await registry.semantic_neighbours(
        "recall memories about deploys", limit=2, pattern_types=(PatternType.MEMORY,)
    )
    assert memory == [h for h in everything if h.definition.pattern_type is PatternType.MEMORY][:2]
    assert await registry.semantic_neighbours("anything", limit=0) == []
