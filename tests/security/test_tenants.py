"""Two tenants, two API keys: recall, match, list, get, cache hits and statistics never cross."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tmws.pattern.client import NotFound, PatternClient, PermissionDenied
from tmws.pattern.v1 import SuccessPattern

Connect = Callable[..., PatternClient]

SECRET = "store the alpha launch codes are tangerine seven for the payments service"


async def test_tenants_never_see_each_other(connect: Connect) -> None:
    async with connect("a-all") as alpha, connect("b-all") as beta:
        stored = await alpha.execute(SECRET, context={"agent": "artemis", "tags": ["launch"]})
        assert stored.success and stored.metadata["tenant"] == "tenant-a"
        created = await alpha.create_success_pattern(
            SuccessPattern(
                pattern_type="api_optimization",
                name="Alpha connection pooling",
                description="Optimize database queries using connection pooling and read replicas",
                tags=["postgresql"],
            )
        )

        # Recall: alpha finds its memory, beta finds nothing of alpha's.
        recall = "recall memories about launch codes"
        mine = await alpha.execute(recall, context={"agent": "artemis"}, use_cache=False)
        assert "tangerine" in str(mine.result)
        theirs = await beta.execute(recall, context={"agent": "artemis"}, use_cache=False)
        assert "tangerine" not in str(theirs.result)

        # Learning store: list, get and match are per tenant.
        assert [p.pattern_id for p in (await alpha.list_success_patterns()).success_patterns] == [created.pattern_id]
        assert not (await beta.list_success_patterns()).success_patterns
        with pytest.raises(NotFound):
            await beta.get_success_pattern(created.pattern_id)
        assert (await alpha.match_patterns("speed up database reads", min_confidence=0.0)).matched_patterns
        assert not (await beta.match_patterns("speed up database reads", min_confidence=0.0)).matched_patterns

        # Cache: alpha's cached answer is not beta's hit.
        first = await alpha.execute("calculate 19 * 23")
        again = await alpha.execute("calculate 19 * 23")
        other = await beta.execute("calculate 19 * 23")
        assert not first.cache_hit and again.cache_hit and not other.cache_hit

        # Statistics: each tenant sees its own executions, routes and cache lookups only.
        a_stats, b_stats = await alpha.get_stats(), await beta.get_stats()
        assert a_stats.engine.total_executions == 4 and a_stats.engine.cache_hits == 1
        assert b_stats.engine.total_executions == 2 and b_stats.engine.cache_hits == 0
        assert a_stats.router.total_routes == 4 and b_stats.router.total_routes == 2
        assert a_stats.cache.hits == 1 and b_stats.cache.hits == 0
        assert b_stats.cache.misses >= 1
        assert a_stats.registry.total_patterns == b_stats.registry.total_patterns  # shared definitions

        await beta.route("check service health")
        assert (await alpha.get_stats()).router.total_routes == 4
        assert (await beta.get_stats()).router.total_routes == 3

        # The service_stats tool (behind "summarize all ...") reports the caller's numbers too.
        summary = await beta.execute("summarize all memories", use_cache=False)
        assert summary.pattern_name == "aggregate_insights" and summary.success
        reported = summary.result["infrastructure"]["output"]
        assert reported["engine"]["total_executions"] == 2  # beta's two executions, none of alpha's four
        assert reported["cache"]["hits"] == 0  # alpha's cache hit is not in it


async def test_process_totals_need_the_admin_scope(connect: Connect) -> None:
    async with connect("a-all") as alpha, connect("b-all") as beta, connect("a-admin") as admin:
        await alpha.execute("calculate 2 + 2")
        await beta.execute("calculate 3 + 3")
        await beta.execute("calculate 4 + 4")
        with pytest.raises(PermissionDenied) as denied:
            await beta.get_stats(process_totals=True)
        assert denied.value.error_info is not None
        assert denied.value.error_info.metadata["required_scope"] == "admin"
        totals = await admin.get_stats(process_totals=True)
        own = await admin.get_stats()
        assert totals.engine.total_executions == 3  # both tenants' executions
        assert totals.router.total_routes >= 3
        assert own.engine.total_executions == 1  # the default stays tenant-a's own numbers (alpha's one)
