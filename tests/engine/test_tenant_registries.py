"""Tenant registry layers: a tenant's changes reach only its own routing (SQLite and PostgreSQL).

The incident: a key of tenant B with the ``admin`` scope replaced the default
``quick_calculation`` and turned ``store_memory`` into a read, after which
tenant A's "store another note" silently ran a read and stored nothing.
"""

from __future__ import annotations

import pytest
from eng_helpers import EngBuilder, eng_definition
from test_routing_judgment import _labelled, _notes_patterns

from pattern_service.domain import MemoryOperation, PatternType
from pattern_service.engine import PatternExecutionEngine
from pattern_service.engine.registries import PatternLayer
from pattern_service.errors import FailedPreconditionError, NotFoundError
from pattern_service.store.memories import SqlMemoryStore

TENANT = PatternLayer.TENANT
GLOBAL = PatternLayer.GLOBAL
NOTE = "store another note about the release train"


def _b_layer() -> list[object]:
    """B's replacements: ``quick_calculation`` runs a failing tool, ``store_memory`` becomes a read."""
    return [
        eng_definition(
            "quick_calculation", trigger_pattern=r"\b(calculate|compute)\s+\S", metadata={"tool": "explode"}
        ),
        eng_definition(
            "store_memory",
            pattern_type=PatternType.MEMORY,
            trigger_pattern=r"\bstore\s+\S",
            priority=8,
            cache_ttl=0,
            metadata={"operation": "recall"},
        ),
    ]


async def test_a_tenant_admin_changes_only_its_own_routing(
    eng_engine: PatternExecutionEngine, eng_memories: SqlMemoryStore
) -> None:
    engine = eng_engine
    a_calc = await engine.execute("calculate 6 * 7", tenant_id="A")
    b_calc = await engine.execute("calculate 6 * 7", tenant_id="B")
    assert a_calc.success and b_calc.success and a_calc.metadata["tool"] == "calculate"
    global_version = engine.registry.version

    stored, created, replaced, version = await engine.register_batch(
        _b_layer(),  # type: ignore[arg-type]
        tenant_id="B",
        layer=TENANT,
    )
    assert (created, replaced) == (2, 0)  # new in B's layer, though they shadow global names
    assert version == global_version + 1 and engine.registry.version == global_version
    assert [d.name for d in stored] == ["quick_calculation", "store_memory"]

    # A's routing is unchanged: its note is stored, its calculation runs the calculator (from cache even).
    note = await engine.execute(NOTE, tenant_id="A")
    assert note.pattern_name == "store_memory" and note.metadata["write"] and note.success
    assert await eng_memories.count("A") == 1
    again = await engine.execute("calculate 6 * 7", tenant_id="A")
    assert again.cache_hit and again.result == a_calc.result
    assert engine.get_definition("store_memory", tenant_id="A").operation is MemoryOperation.STORE
    assert engine.definition_layer("quick_calculation", tenant_id="A") is GLOBAL
    assert engine.registries.for_tenant("A") is engine.registry  # no copy for a tenant without a layer

    # B sees its own: the note is a read now, the calculation runs B's tool (B's cached result is stale).
    b_note = await engine.execute(NOTE, tenant_id="B")
    assert b_note.metadata["operation"] == "recall" and not b_note.metadata["write"]
    assert await eng_memories.count("B") == 0
    b_again = await engine.execute("calculate 6 * 7", tenant_id="B")
    assert not b_again.cache_hit and b_again.metadata["tool"] == "explode" and not b_again.success
    assert b_again.metadata["registry_version"] == global_version + 1
    assert engine.definition_layer("store_memory", tenant_id="B") is TENANT
    b_names = [d.name for d in engine.list_definitions(tenant_id="B")]
    assert sorted(b_names) == sorted(d.name for d in engine.list_definitions(tenant_id="A"))  # shadowed, not added
    assert engine.get_stats("B").registry.registry_version == global_version + 1
    assert engine.get_stats("A").registry.registry_version == global_version

    # B cannot delete a global pattern; nothing changes.
    with pytest.raises(FailedPreconditionError) as refused:
        await engine.delete_definition("recall_memory", tenant_id="B", layer=TENANT)
    assert refused.value.reason == "GLOBAL_LAYER_PATTERN"
    with pytest.raises(NotFoundError):
        await engine.delete_definition("no_such_pattern", tenant_id="B", layer=TENANT)
    assert engine.registries.version_of("B") == global_version + 1

    # Deleting B's store_memory uncovers the global one for B.
    version = await engine.delete_definition("store_memory", tenant_id="B", layer=TENANT)
    assert version == global_version + 2
    stored_note = await engine.execute(NOTE, tenant_id="B")
    assert stored_note.metadata["write"] and stored_note.success
    assert await eng_memories.count("B") == 1
    assert engine.definition_layer("store_memory", tenant_id="B") is GLOBAL

    # B's last pattern gone: the shared registry serves B again, and B's version keeps counting.
    await engine.delete_definition("quick_calculation", tenant_id="B", layer=TENANT)
    assert engine.registries.for_tenant("B") is engine.registry
    assert engine.registries.version_of("B") == global_version + 3
    assert (await engine.execute("calculate 6 * 7", tenant_id="B")).metadata["tool"] == "calculate"


async def test_global_changes_reach_every_tenant_and_layers_survive_a_restart(
    eng_engine: PatternExecutionEngine, eng_build: EngBuilder
) -> None:
    engine = eng_engine
    await engine.register_batch(_b_layer(), tenant_id="B", layer=TENANT)  # type: ignore[arg-type]
    b_version = engine.registries.version_of("B")

    # A global change is seen by A (shared registry) and by B (its effective registry is rebuilt).
    await engine.register_batch([eng_definition("fleet_status")], tenant_id="ops", layer=GLOBAL)
    assert engine.get_definition("fleet_status", tenant_id="A").name == "fleet_status"
    assert engine.definition_layer("fleet_status", tenant_id="B") is GLOBAL
    assert engine.registries.version_of("B") == b_version + 1
    assert (await engine.route("fleet_status", tenant_id="B")).pattern_name == "fleet_status"
    # ... and a global replacement of a name B shadows does not reach B.
    replacement = eng_definition("quick_calculation", metadata={"tool": "calculate"})
    await engine.register_batch([replacement], layer=GLOBAL)
    assert engine.get_definition("quick_calculation", tenant_id="B").tool == "explode"

    # Another engine on the same stores (a restart, or another replica) loads B's layer.
    other = await eng_build()
    assert other.definition_layer("store_memory", tenant_id="B") is TENANT
    assert other.get_definition("store_memory", tenant_id="A").operation is MemoryOperation.STORE
    assert other.registries.version_of("B") == engine.registries.version_of("B")

    # B deletes on the first; the other notices through the stored layer versions.
    await engine.delete_definition("store_memory", tenant_id="B", layer=TENANT)
    assert other.definition_layer("store_memory", tenant_id="B") is TENANT
    assert not (await other.execute(NOTE, tenant_id="B")).metadata["write"]
    assert await other.registries.refresh_if_changed("B")
    assert other.definition_layer("store_memory", tenant_id="B") is GLOBAL
    assert (await other.execute(NOTE, tenant_id="B")).metadata["write"]
    assert other.registries.version_of("B") == engine.registries.version_of("B")


async def test_a_tenant_fit_sets_thresholds_and_calibration_for_that_tenant_only(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False, semantic_threshold=0.2)
    await engine.register_batch(_notes_patterns())
    utterances = _labelled() * 2  # enough samples per pattern to fit its threshold
    global_calibration = engine.registry.calibration
    fitted = await engine.fit_routing(utterances, tenant_id="B", layer=TENANT)
    assert fitted.thresholds and fitted.calibration.sources
    assert fitted.registry_version == engine.registries.version_of("B") == engine.registry.version + 1
    # A (and the global layer) keep their thresholds and calibration.
    assert all(d.similarity_threshold is None for d in engine.list_definitions(tenant_id="A"))
    assert engine.registries.for_tenant("A").calibration == global_calibration
    # B routes with its own: the fitted thresholds of global patterns are B's overrides, not copies.
    b_registry = engine.registries.for_tenant("B")
    assert b_registry is not engine.registry and b_registry.calibration == fitted.calibration
    for name, threshold in fitted.thresholds.items():
        assert engine.get_definition(name, tenant_id="B").similarity_threshold == pytest.approx(threshold)
        assert engine.definition_layer(name, tenant_id="B") is GLOBAL
    # A restart loads them.
    again = await eng_build(load_defaults=False, semantic_threshold=0.2)
    assert again.registries.for_tenant("B").calibration == fitted.calibration
    assert again.registries.for_tenant("A").calibration == global_calibration
    for name, threshold in fitted.thresholds.items():
        assert again.get_definition(name, tenant_id="B").similarity_threshold == pytest.approx(threshold)


async def test_the_catalog_tools_show_the_callers_tenant_its_own_patterns(eng_engine: PatternExecutionEngine) -> None:
    """``list_patterns`` and ``match_patterns`` read the caller's effective registry, not the global one."""
    engine = eng_engine
    await engine.register_batch(
        [
            eng_definition(
                "tide_tables",
                trigger_pattern=r"\btide tables?\b",
                description="high and low tide times for a harbour",
                examples=("when is high tide in the harbour", "tide times for tomorrow morning"),
            )
        ],
        tenant_id="B",
        layer=TENANT,
    )

    async def tool(query: str, tenant: str) -> dict[str, object]:
        result = await engine.execute(query, tenant_id=tenant, use_cache=False)
        assert result.success and result.metadata["tool"] == "run_tool", result
        ran = result.result["infrastructure"]["output"]  # run_tool: {"tool", "ran", "output"}
        assert ran["ran"]
        return ran["output"]  # type: ignore[no-any-return]

    listed = {t: [p["name"] for p in (await tool("run the tool list_patterns", t))["patterns"]] for t in "AB"}
    assert "tide_tables" in listed["B"] and "tide_tables" not in listed["A"]
    assert set(listed["B"]) - set(listed["A"]) == {"tide_tables"}
    query = "invoke tool match_patterns on high tide times in the harbour"
    matched = {t: [m["name"] for m in (await tool(query, t))["matches"]] for t in "AB"}
    assert matched["B"][0] == "tide_tables" and "tide_tables" not in matched["A"]
