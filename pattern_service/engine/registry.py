"""The pattern registry: validated, persisted, compiled pattern definitions and query matching.

What a query matches: a pattern whose name equals the query (exact); the RE2
triggers, all evaluated in one pass by an ``re2.Set`` and ordered by priority
(higher first, then name; seed ``PatternRegistry``: "higher = checked first");
and, unless a name matched, every pattern's hybrid similarity to the query
(dense MiniLM cosine over its examples blended with BM25, :mod:`.scoring`),
embedded once per registry change. The router decides what to do with them.

The registry also holds what routing was fitted to: per-pattern similarity
thresholds (in the definitions) and the confidence calibration
(:class:`~pattern_service.calibration.RoutingCalibration`), both
persisted with the registry version.

Match outcomes are kept in an LRU cache keyed by the normalized query and
cleared once per registry change (seed ``register_batch``: "Single cache
invalidation for all patterns").

Longer than this code base's ~400-line guide on purpose: a registry version is
one immutable compiled state (definitions, the RE2 set, example vectors, the
lexical index, the match cache), and building, swapping, reloading and
matching it share that state's invariants; the scoring and the lexical index
are already their own modules (:mod:`.scoring`, :mod:`pattern_service.lexical`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import re2
from cachetools import LRUCache

from pattern_service.calibration import UNCALIBRATED, RoutingCalibration
from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.engine.ports import Embedder, PatternDefinitionStore
from pattern_service.engine.scoring import Candidate, ScoringModel
from pattern_service.engine.stats import RegistrySnapshot
from pattern_service.engine.text import command_span, normalize_query
from pattern_service.engine.tools import SemanticHit
from pattern_service.engine.validation import (
    compile_trigger,
    load_default_calibration,
    load_default_definitions,
    normalize_definition,
    re2_options,
    validate_definitions,
)
from pattern_service.errors import FieldViolation, InvalidArgumentError, NotFoundError

logger = logging.getLogger(__name__)

SET_MAX_MEM = 64 << 20
#: Candidates kept per match outcome (best hybrid scores).
SEMANTIC_KEEP = 100
#: Largest batch validated on the event loop; larger ones are validated in a worker thread.
_INLINE_BATCH = 64


@dataclass(frozen=True, slots=True)
class TriggerHit:
    """A trigger that matched.

    Attributes:
        definition: The pattern.
        span_length: Characters of the normalized query the trigger matched.
    """

    definition: PatternDefinition
    span_length: int


@dataclass(frozen=True, slots=True)
class MatchOutcome:
    """Everything the registry found for one query (immutable; shared through the match cache).

    Attributes:
        normalized: The normalized query.
        exact: The pattern whose name equals the query, if any.
        triggers: Trigger matches, priority descending then name.
        candidates: Patterns by hybrid similarity, best first (top 100);
            empty when ``exact`` matched or no pattern has examples.
        trigger_scores: The hybrid candidate of each trigger match that has
            examples, by name (whatever its rank).
        registry_version: Version of the registry that produced this outcome.
    """

    normalized: str
    exact: PatternDefinition | None
    triggers: tuple[TriggerHit, ...]
    candidates: tuple[Candidate, ...]
    trigger_scores: Mapping[str, Candidate]
    registry_version: int


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Outcome of ``register_batch``: stored definitions, created and replaced counts, registry version."""

    definitions: list[PatternDefinition]
    created: int
    replaced: int
    version: int


@dataclass(frozen=True, slots=True)
class _State:
    version: int
    by_name: Mapping[str, PatternDefinition]
    ordered: tuple[PatternDefinition, ...]
    regexes: Mapping[str, Any]
    trigger_set: Any
    set_names: tuple[str, ...]
    model: ScoringModel
    calibration: RoutingCalibration


def _order_key(d: PatternDefinition) -> tuple[int, str]:
    return (-d.priority, d.name)


class PatternRegistry:
    """Registered pattern definitions, compiled for matching.

    Args:
        store: Persistence of definitions and the registry version.
        embedder: Embeds example utterances and queries.
        tool_names: Returns the names of the registered tools (``metadata.tool`` must be one).
        semantic_threshold: Global minimum hybrid similarity for a match by meaning
            (a pattern's ``similarity_threshold`` wins).
        match_cache_size: Entries of the match LRU cache.
        load_defaults: Seed an empty, never-seeded store with the default set.
        defaults_path: Default set to seed (the bundled ``patterns.yaml`` when ``None``).
        default_cache_ttl: Cache TTL (seconds) of default-set entries that give none.
    """

    def __init__(
        self,
        store: PatternDefinitionStore,
        embedder: Embedder,
        tool_names: Collection[str],
        *,
        semantic_threshold: float = 0.3,
        match_cache_size: int = 4096,
        load_defaults: bool = True,
        defaults_path: Path | None = None,
        default_cache_ttl: int = 300,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._tool_names = tool_names
        self.semantic_threshold = semantic_threshold
        self._load_defaults = load_defaults
        self._defaults_path = defaults_path
        self._default_cache_ttl = default_cache_ttl
        self._lock = asyncio.Lock()
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        self._match_cache: LRUCache[str, MatchOutcome] = LRUCache(maxsize=max(1, match_cache_size))
        self._hits = 0
        self._misses = 0
        self.invalidation_count = 0
        self._swap_listeners: list[Callable[[int], None]] = []
        self._state = self._build([], 0, None, UNCALIBRATED)

    def add_swap_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(version)`` after each swap of the compiled state (a new registry version).

        Listeners run synchronously on the event loop and must not raise; the
        engine uses this to drop local result-cache entries keyed by the old version.
        """
        self._swap_listeners.append(listener)

    # ------------------------------------------------------------------ reads

    @property
    def version(self) -> int:
        """Current registry version (from the store)."""
        return self._state.version

    def definitions(self, pattern_type: PatternType | None = None) -> list[PatternDefinition]:
        """Registered definitions (optionally of one type), priority descending then name."""
        return [d for d in self._state.ordered if pattern_type is None or d.pattern_type is pattern_type]

    def iter_definitions(self) -> Iterator[PatternDefinition]:
        """Registered definitions, priority descending then name, without building a list."""
        return iter(self._state.ordered)

    def get(self, name: str) -> PatternDefinition | None:
        """The definition of that name, or ``None``."""
        return self._state.by_name.get(name)

    @property
    def calibration(self) -> RoutingCalibration:
        """The confidence calibration of the current registry version."""
        return self._state.calibration

    def threshold(self, definition: PatternDefinition) -> float:
        """The minimum hybrid similarity of ``definition``: its own, else the global one."""
        own = definition.similarity_threshold
        return self.semantic_threshold if own is None else own

    def trigger_span(self, name: str, query: str) -> tuple[int, int] | None:
        """Span of ``query`` holding the command words the trigger of ``name`` matched, or ``None``.

        The first match, cut back to its command words (:func:`.text.command_span`):
        content the trigger only peeked at stays in the subject.
        """
        regex = self._state.regexes.get(name)
        if regex is None:
            return None

        def search(text: str) -> tuple[int, int] | None:
            m = regex.search(text)
            return None if m is None else (m.start(), m.end())

        span = search(query)
        return None if span is None else command_span(search, query, span)

    def stats(self) -> RegistrySnapshot:
        """Registry statistics (the seed's names; ``cache_hit_rate`` is a fraction 0-1)."""
        by_type = {t.value: 0 for t in PatternType}
        for d in self._state.ordered:
            by_type[d.pattern_type.value] += 1
        lookups = self._hits + self._misses
        return RegistrySnapshot(
            total_patterns=len(self._state.ordered),
            patterns_by_type=by_type,
            cache_hits=self._hits,
            cache_misses=self._misses,
            cache_hit_rate=self._hits / lookups if lookups else 0.0,
            cache_size=len(self._match_cache),
            registry_version=self._state.version,
        )

    # --------------------------------------------------------------- matching

    async def match(self, query: str, *, remember: bool = True) -> MatchOutcome:
        """Find what a query matches: exact name, triggers and hybrid similarity candidates.

        Args:
            query: Natural-language query (any case and spacing).
            remember: Keep a fresh outcome in the match cache. Off for bulk
                evaluation, whose thousands of one-off queries would evict the
                outcomes (and the routing plans kept with them) of live traffic.

        Returns:
            The outcome, served from the LRU match cache when the same
            normalized query was matched since the last registry change.
        """
        norm = normalize_query(query)
        state = self._state
        cached = self._match_cache.get(norm)
        if cached is not None and cached.registry_version == state.version:
            self._hits += 1
            return cached
        self._misses += 1
        exact = state.by_name.get(norm) or state.by_name.get(norm.replace(" ", "_"))
        triggers = self._triggers(state, norm)
        ranked: list[Candidate] = []
        extra: dict[str, Candidate] = {}
        if exact is None and norm and state.model.owners:
            vector = (await self._embedder.embed([norm]))[0]
            ranked, extra = state.model.top(vector, norm, SEMANTIC_KEEP, also=[h.definition.name for h in triggers])
        outcome = MatchOutcome(norm, exact, triggers, tuple(ranked), extra, state.version)
        if remember and self._state is state:
            self._match_cache[norm] = outcome
        return outcome

    def _triggers(self, state: _State, norm: str) -> tuple[TriggerHit, ...]:
        if state.trigger_set is not None:
            indices = state.trigger_set.Match(norm) or []
            names: Iterable[str] = (state.set_names[i] for i in indices)
        else:
            names = state.regexes
        hits = []
        for name in names:
            m = state.regexes[name].search(norm)
            if m is not None:
                hits.append(TriggerHit(state.by_name[name], m.end() - m.start()))
        hits.sort(key=lambda h: _order_key(h.definition))
        return tuple(hits)

    async def semantic_neighbours(
        self, text: str, *, limit: int = 5, pattern_types: Sequence[PatternType] = ()
    ) -> list[SemanticHit]:
        """Registered patterns closest in meaning to ``text``, best first.

        Args:
            text: Any text.
            limit: Maximum results.
            pattern_types: Only these types (empty = all).

        Returns:
            Up to ``limit`` hits (score = hybrid similarity), no threshold applied.
        """
        state = self._state
        norm = normalize_query(text)
        if not state.model.owners or not norm or limit <= 0:
            return []
        vector = (await self._embedder.embed([norm]))[0]
        ranked, _ = state.model.top(vector, norm, limit, pattern_types)
        return [SemanticHit(c.definition, c.score, c.example) for c in ranked]

    # ---------------------------------------------------------------- changes

    def validate(self, definitions: Sequence[PatternDefinition]) -> list[FieldViolation]:
        """Every problem of a batch, as field violations ``pattern_definitions[i].<field>`` (empty = valid)."""
        return validate_definitions(definitions, self._tool_names)

    def _check(self, definitions: Sequence[PatternDefinition]) -> tuple[list[FieldViolation], list[PatternDefinition]]:
        violations = self.validate(definitions)
        return violations, [] if violations else [normalize_definition(d) for d in definitions]

    async def register_batch(
        self, definitions: Sequence[PatternDefinition], validate_only: bool = False
    ) -> BatchResult:
        """Register or replace definitions atomically.

        Validates the whole batch, embeds new examples, persists everything in
        one store transaction, then swaps the compiled state in one assignment
        and clears the match cache once.

        Args:
            definitions: The batch (unique names).
            validate_only: Only validate; report what would be created/replaced.

        Returns:
            Stored definitions (with timestamps), created and replaced counts, new version.

        Raises:
            InvalidArgumentError: With every violation; nothing was changed.
        """
        if len(definitions) > _INLINE_BATCH:  # compiling 1,000 triggers takes ~50 ms: not on the loop
            violations, batch = await asyncio.to_thread(self._check, definitions)
        else:
            violations, batch = self._check(definitions)
        if violations:
            raise InvalidArgumentError(violations, f"{len(violations)} invalid field(s) in the batch")
        async with self._lock:
            state = self._state
            created = sum(1 for d in batch if d.name not in state.by_name)
            if validate_only:
                return BatchResult(batch, created, len(batch) - created, state.version)
            await self._embed_examples(batch)
            stored, created, replaced, version = await self._store.apply_batch(batch)
            if version == state.version + 1:
                merged = dict(state.by_name)
                merged.update((d.name, d) for d in stored)
                self._swap(await self._build_off_loop(merged.values(), version, state.calibration))
            else:
                await self._reload_locked()
        return BatchResult(list(stored), created, replaced, version)

    async def apply_fit(self, thresholds: Mapping[str, float], calibration: RoutingCalibration) -> int:
        """Set per-pattern similarity thresholds and the calibration in one registry change.

        One store transaction (one version bump) replaces the named definitions
        with their new thresholds and stores the calibration; then the compiled
        state is swapped once, as for :meth:`register_batch`.

        Args:
            thresholds: New threshold by pattern name (names must be registered).
            calibration: The new calibration.

        Returns:
            The new registry version.

        Raises:
            NotFoundError: A name is not registered.
        """
        async with self._lock:
            state = self._state
            missing = sorted(n for n in thresholds if n not in state.by_name)
            if missing:
                raise NotFoundError("PatternDefinition", missing[0])
            changed = [replace(state.by_name[n], similarity_threshold=float(t)) for n, t in sorted(thresholds.items())]
            stored, _, _, version = await self._store.apply_batch(changed, calibration=calibration.to_dict())
            if version == state.version + 1:
                merged = dict(state.by_name)
                merged.update((d.name, d) for d in stored)
                self._swap(await self._build_off_loop(merged.values(), version, calibration))
            else:
                await self._reload_locked()
        return version

    async def delete(self, name: str) -> int:
        """Delete a definition; returns the new registry version.

        Raises:
            NotFoundError: No definition has that name.
        """
        async with self._lock:
            state = self._state
            version = await self._store.delete(name)
            if version == state.version + 1:
                remaining = [d for d in state.ordered if d.name != name]
                self._swap(await self._build_off_loop(remaining, version, state.calibration))
            else:
                await self._reload_locked()
        return version

    async def load(self) -> None:
        """Load the definitions from the store; seed the default set into a never-seeded store.

        Seeding happens once (``mark_seeded``): a deleted default stays deleted
        across restarts. Defaults whose name is already stored are not overwritten.

        Raises:
            InvalidArgumentError: The default set is invalid (e.g. names a tool
                that is not registered).
        """
        async with self._lock:
            if self._load_defaults and not await self._store.is_seeded():
                defaults = load_default_definitions(self._defaults_path, default_cache_ttl=self._default_cache_ttl)
                violations = self.validate(defaults)
                if violations:
                    raise InvalidArgumentError(violations, "the default pattern set is invalid")
                stored, _ = await self._store.load()
                present = {d.name for d in stored}
                fresh = [normalize_definition(d) for d in defaults if d.name not in present]
                calibration, fitted_for = load_default_calibration(self._defaults_path)
                if fitted_for is not None and fitted_for != self._embedder.model_id:
                    # Thresholds and calibration are on the scale of the embedder they were fitted with.
                    logger.info(
                        "default thresholds and calibration were fitted for %s, not %s: not used (run FitRouting)",
                        fitted_for,
                        self._embedder.model_id,
                    )
                    fresh = [replace(d, similarity_threshold=None) for d in fresh]
                    calibration = UNCALIBRATED
                await self._store.apply_batch(fresh, mark_seeded=True, calibration=calibration.to_dict())
                logger.info("seeded %d default pattern definition(s)", len(fresh))
            await self._reload_locked()

    def derive(self, store: PatternDefinitionStore) -> PatternRegistry:
        """A registry with this one's settings over another store (a tenant's effective registry).

        It never seeds the default set, and starts with this registry's
        example vectors, so loading it embeds only examples this one lacks.
        """
        other = PatternRegistry(
            store,
            self._embedder,
            self._tool_names,
            semantic_threshold=self.semantic_threshold,
            match_cache_size=int(self._match_cache.maxsize),
            load_defaults=False,
            default_cache_ttl=self._default_cache_ttl,
        )
        other._vectors.update(self._vectors)
        return other

    async def reload(self) -> None:
        """Reload everything from the store (one swap)."""
        async with self._lock:
            await self._reload_locked()

    async def refresh_if_changed(self) -> bool:
        """Reload when the store's version moved (another replica changed the registry).

        Returns:
            Whether a reload happened.
        """
        if await self._store.version() == self._state.version:
            return False
        async with self._lock:
            if await self._store.version() == self._state.version:
                return False
            await self._reload_locked()
        return True

    async def _reload_locked(self) -> None:
        definitions, version, stored_calibration = await self._store.load_state()
        try:
            calibration = RoutingCalibration.from_dict(stored_calibration)
        except ValueError as exc:
            logger.error("stored routing calibration ignored (confidence = raw score): %s", exc)
            calibration = UNCALIBRATED
        await self._embed_examples(definitions)
        self._swap(await self._build_off_loop(definitions, version, calibration))

    async def _embed_examples(self, definitions: Iterable[PatternDefinition]) -> None:
        missing = sorted({e for d in definitions for e in d.examples if e not in self._vectors})
        for i in range(0, len(missing), 256):
            chunk = missing[i : i + 256]
            vectors = await self._embedder.embed([normalize_query(t) for t in chunk])
            self._vectors.update(zip(chunk, vectors, strict=True))

    def _swap(self, state: _State) -> None:
        self._state = state
        self._match_cache.clear()
        self.invalidation_count += 1
        for listener in self._swap_listeners:
            listener(state.version)
        live = {e for d in state.ordered for e in d.examples}
        for text in [t for t in self._vectors if t not in live]:
            del self._vectors[text]

    async def _build_off_loop(
        self, definitions: Iterable[PatternDefinition], version: int, calibration: RoutingCalibration
    ) -> _State:
        """:meth:`_build` in a worker thread (caller holds ``self._lock``).

        Compiling thousands of triggers and stacking the example matrix takes
        tens to hundreds of milliseconds of CPU; in a thread, the event loop
        keeps serving other calls meanwhile (the interpreter switches threads
        every few milliseconds). ``self._vectors`` is only changed under the
        lock, so the thread reads it safely.
        """
        return await asyncio.to_thread(self._build, list(definitions), version, self._state, calibration)

    def _build(
        self,
        definitions: Iterable[PatternDefinition],
        version: int,
        previous: _State | None,
        calibration: RoutingCalibration,
    ) -> _State:
        ordered = tuple(sorted(definitions, key=_order_key))
        regexes: dict[str, Any] = {}
        old_definitions = previous.by_name if previous is not None else {}
        old_regexes = previous.regexes if previous is not None else {}
        for d in ordered:
            if d.trigger_pattern:
                # A trigger that did not change keeps its compiled program (a RegisterBatch of
                # 1,000 on a registry of 10,000 compiles 1,000 regexes, not 11,000).
                old = old_definitions.get(d.name)
                if old is not None and old.trigger_pattern == d.trigger_pattern and d.name in old_regexes:
                    regexes[d.name] = old_regexes[d.name]
                    continue
                try:
                    regexes[d.name] = compile_trigger(d.trigger_pattern)
                except ValueError as exc:
                    logger.error("pattern %s: trigger skipped: %s", d.name, exc)
        trigger_set, set_names = _compile_set(ordered, regexes)
        return _State(
            version=version,
            by_name={d.name: d for d in ordered},
            ordered=ordered,
            regexes=regexes,
            trigger_set=trigger_set,
            set_names=set_names,
            model=ScoringModel.build(ordered, self._vectors, self._embedder.dimension),
            calibration=calibration,
        )


def _compile_set(ordered: Sequence[PatternDefinition], regexes: Mapping[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """One ``re2.Set`` over every trigger (``None`` when empty or it cannot compile: fall back to a scan)."""
    names = tuple(d.name for d in ordered if d.name in regexes)
    if not names:
        return None, ()
    trigger_set = re2.Set.SearchSet(re2_options(SET_MAX_MEM))
    try:
        for name in names:
            trigger_set.Add(regexes[name].pattern)
        trigger_set.Compile()
    except re2.error:
        logger.warning("RE2 set of %d triggers failed to compile; matching by scan", len(names))
        return None, ()
    return trigger_set, names
