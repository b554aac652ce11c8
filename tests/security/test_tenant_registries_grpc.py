"""Tenant registry layers over gRPC with API keys: two tenant admins cannot affect each other's routing.

Tenant B's ``admin`` key replaces ``quick_calculation`` and turns ``store_memory``
into a read in B's own layer; tenant A's "store another note" still stores.
Only ``patterns:admin:global`` changes the global layer, and ``admin`` does
not imply it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tmws.pattern.client import FailedPrecondition, PatternClient, PermissionDenied
from tmws.pattern.v1 import (
    PATTERN_LAYER_GLOBAL,
    PATTERN_LAYER_TENANT,
    PATTERN_TYPE_INFRASTRUCTURE,
    PATTERN_TYPE_MEMORY,
    PatternDefinition,
)

Connect = Callable[..., PatternClient]
NOTE = "store another note about the release train"


def _definition(name: str, trigger: str, **metadata: str) -> PatternDefinition:
    msg = PatternDefinition(
        name=name, pattern_type=PATTERN_TYPE_MEMORY, trigger_pattern=trigger, priority=8, cache_ttl=0
    )
    msg.metadata.update(metadata)
    return msg


async def _layers(client: PatternClient) -> dict[str, int]:
    return {d.name: d.layer async for d in client.iter_all_pattern_definitions()}


async def test_two_tenant_admins_cannot_affect_each_others_routing(connect: Connect) -> None:
    async with (
        connect("a-all") as alpha,
        connect("a-admin") as alpha_admin,
        connect("b-all") as beta,
        connect("b-admin") as beta_admin,
        connect("ops-global") as ops,
    ):
        # B's admin key: the unspecified layer is B's own (admin lacks patterns:admin:global).
        calc = PatternDefinition(
            name="quick_calculation",
            pattern_type=PATTERN_TYPE_MEMORY,
            trigger_pattern=r"\b(calculate|compute)\s+\S",
        )
        calc.metadata.update({"operation": "recent"})
        # validate_only reports the layer a write would go to (what `patterns apply --prune` prunes).
        dry = await beta_admin.register_batch([calc], validate_only=True)
        assert (dry.created_count, dry.pattern_definitions[0].layer) == (1, PATTERN_LAYER_TENANT)
        registered = await beta_admin.register_batch(
            [calc, _definition("store_memory", r"\bstore\s+\S", operation="recall")]
        )
        assert (registered.created_count, registered.replaced_count) == (2, 0)
        assert {d.layer for d in registered.pattern_definitions} == {PATTERN_LAYER_TENANT}

        # ... and the global layer is refused to it, with nothing changed.
        with pytest.raises(PermissionDenied) as denied:
            await beta_admin.register_batch([calc], layer=PATTERN_LAYER_GLOBAL)
        info = denied.value.error_info
        assert info is not None and info.reason == "MISSING_SCOPE"
        assert info.metadata["required_scope"] == "patterns:admin:global"
        with pytest.raises(PermissionDenied):
            await beta_admin.delete_pattern_definition("store_memory", layer=PATTERN_LAYER_GLOBAL)
        with pytest.raises(FailedPrecondition) as global_only:
            await beta_admin.delete_pattern_definition("recall_memory")
        assert global_only.value.error_info is not None
        assert global_only.value.error_info.reason == "GLOBAL_LAYER_PATTERN"

        # A's routing is unchanged: the note is stored.
        stored = await alpha.execute(NOTE, context={"agent": "artemis"})
        assert stored.pattern_name == "store_memory" and stored.metadata["write"] and stored.success
        assert stored.result["memory"]["memory"]["memory_id"]
        assert (await alpha.route("calculate 6 * 7")).pattern_type == PATTERN_TYPE_INFRASTRUCTURE
        a_layers = await _layers(alpha)
        assert a_layers["store_memory"] == a_layers["quick_calculation"] == PATTERN_LAYER_GLOBAL

        # B sees its own, with their layer.
        read = await beta.execute(NOTE, context={"agent": "artemis"})
        assert read.metadata["operation"] == "recall" and not read.metadata["write"]
        assert (await beta.route("calculate 6 * 7")).pattern_type == PATTERN_TYPE_MEMORY
        b_layers = await _layers(beta)
        assert b_layers["store_memory"] == b_layers["quick_calculation"] == PATTERN_LAYER_TENANT
        assert set(b_layers) == set(a_layers)
        got = await beta.get_pattern_definition("store_memory")
        assert got.layer == PATTERN_LAYER_TENANT and got.metadata["operation"] == "recall"

        # A's admin cannot touch B's layer: its own layer has no store_memory.
        with pytest.raises(FailedPrecondition):
            await alpha_admin.delete_pattern_definition("store_memory")

        # Deleting B's pattern uncovers the global one for B.
        await beta_admin.delete_pattern_definition("store_memory")
        again = await beta.execute(NOTE, context={"agent": "artemis"})
        assert again.metadata["write"] and again.success
        assert (await beta.get_pattern_definition("store_memory")).layer == PATTERN_LAYER_GLOBAL

        # The global scope changes what every tenant sees (B's shadow excepted).
        fleet = _definition("fleet_status", r"\bfleet\s+status\b", operation="recent")
        changed = await ops.register_batch([fleet])
        assert changed.pattern_definitions[0].layer == PATTERN_LAYER_GLOBAL
        assert (await alpha.route("fleet status please")).pattern_name == "fleet_status"
        assert (await beta.route("fleet status please")).pattern_name == "fleet_status"
        assert (await beta.get_pattern_definition("quick_calculation")).layer == PATTERN_LAYER_TENANT
