"""The admin command line (``tmws-pattern patterns …``, ``health``) against a real server, and TMWS_PATTERNS_FILE."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
from dataclasses import dataclass
from typing import Any

import yaml
from server_helpers import drop_server_database, make_settings, start_server


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def cli(target: str, *args: str, stdin: str | None = None) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tmws.pattern.client",
        "--target",
        target,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_patterns_export_apply_dry_run_prune_get_delete(target: str, tmp_path: pathlib.Path) -> None:
    exported = await cli(target, "patterns", "export")
    assert exported.code == 0, exported.err
    data = yaml.safe_load(exported.out)
    names = [p["name"] for p in data["patterns"]]
    assert "quick_calculation" in names and len(names) == 14
    assert all("create_time" not in p for p in data["patterns"])

    # Re-applying the export changes nothing.
    path = tmp_path / "patterns.yaml"
    path.write_text(exported.out)
    same = await cli(target, "patterns", "apply", "-f", str(path), "--prune", "--dry-run")
    assert same.code == 0, same.err
    assert (same.json()["added"], same.json()["changed"], same.json()["deleted"]) == ([], [], [])

    # Edit: change one, add one, drop one.
    entries = {p["name"]: p for p in data["patterns"]}
    entries["quick_calculation"]["priority"] = 3
    entries["quick_calculation"]["examples"] = ["what is 6 times 7"]
    del entries["temporal_analysis"]
    entries["deploy_notes"] = {
        "name": "deploy_notes",
        "pattern_type": "PATTERN_TYPE_MEMORY",
        "trigger_pattern": r"\bdeploy\s+notes\b",
        "cost_tokens": 120,
        "priority": 6,
        "cache_ttl": 120,
        "description": "Recall what was noted about deployments.",
        "examples": ["what did we write down about deploys"],
        "metadata": {"operation": "recall"},
    }
    path.write_text(yaml.safe_dump({"patterns": list(entries.values())}, sort_keys=False))

    dry = await cli(target, "patterns", "apply", "-f", str(path), "--prune", "--dry-run")
    assert dry.code == 0, dry.err
    print("\n$ tmws-pattern patterns apply -f patterns.yaml --prune --dry-run\n" + dry.err)
    plan = dry.json()
    assert plan["dry_run"] is True
    assert plan["added"] == ["deploy_notes"]
    assert [c["name"] for c in plan["changed"]] == ["quick_calculation"]
    assert plan["changed"][0]["changes"]["priority"] == {"from": 7, "to": 3}
    assert plan["changed"][0]["changes"]["examples"]["to"] == ["what is 6 times 7"]
    assert plan["deleted"] == ["temporal_analysis"]
    assert "+ deploy_notes" in dry.err and "~ quick_calculation" in dry.err and "- temporal_analysis" in dry.err
    # Nothing changed on the server.
    unchanged = await cli(target, "patterns", "get", "quick_calculation")
    assert unchanged.json()["priority"] == 7
    assert (await cli(target, "patterns", "get", "temporal_analysis")).code == 0

    # Without --prune the extra definition is only reported.
    kept = (await cli(target, "patterns", "apply", "-f", str(path), "--dry-run")).json()
    assert kept["deleted"] == [] and kept["not_in_file"] == ["temporal_analysis"]

    applied = await cli(target, "patterns", "apply", "-f", str(path), "--prune")
    assert applied.code == 0, applied.err
    assert "applied: 1 added, 1 changed, 1 deleted, 12 unchanged" in applied.err
    got = (await cli(target, "patterns", "get", "quick_calculation")).json()
    assert got["priority"] == 3 and got["examples"] == ["what is 6 times 7"]
    assert (await cli(target, "patterns", "get", "deploy_notes")).json()["pattern_type"] == "PATTERN_TYPE_MEMORY"
    missing = await cli(target, "patterns", "get", "temporal_analysis")
    assert missing.code == 1 and "NOT_FOUND" in missing.err
    listed = (await cli(target, "patterns", "list", "--type", "memory")).json()
    assert "deploy_notes" in {d["name"] for d in listed}
    assert all(d["pattern_type"] == "PATTERN_TYPE_MEMORY" for d in listed)

    deleted = await cli(target, "patterns", "delete", "deploy_notes")
    assert deleted.code == 0 and deleted.json()["deleted"] == ["deploy_notes"]


async def test_apply_reports_invalid_files(target: str, tmp_path: pathlib.Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("patterns: [name: x\n")
    run = await cli(target, "patterns", "apply", "-f", str(bad_yaml))
    assert run.code == 2 and "invalid YAML" in run.err
    unknown_key = tmp_path / "unknown.yaml"
    unknown_key.write_text(yaml.safe_dump({"patterns": [{"name": "x", "pattern_type": "memory", "colour": "red"}]}))
    run = await cli(target, "patterns", "apply", "-f", str(unknown_key))
    assert run.code == 2 and "colour" in run.err and "patterns[0]" in run.err
    # Server-side validation (an unknown tool) fails the dry run with the field violation; nothing changes.
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(
        yaml.safe_dump(
            {
                "patterns": [
                    {
                        "name": "broken",
                        "pattern_type": "infrastructure",
                        "trigger_pattern": "broken",
                        "cost_tokens": 1,
                        "metadata": {"tool": "no_such_tool"},
                    }
                ]
            }
        )
    )
    run = await cli(target, "patterns", "apply", "-f", str(invalid), "--dry-run")
    assert run.code == 1 and "INVALID_ARGUMENT" in run.err and "pattern_definitions[0].metadata.tool" in run.err


async def test_health_exit_code(target: str) -> None:
    run = await cli(target, "health")
    assert run.code == 0, run.err
    report = run.json()
    assert report["healthy"] is True
    assert report["services"]["tmws.pattern.v1.PatternExecutionService"] == "SERVING"
    assert report["components"]["sql"]["healthy"] is True
    unreachable = await cli("127.0.0.1:1", "--timeout", "2", "health")
    assert unreachable.code == 1 and "UNAVAILABLE" in unreachable.err


async def test_execute_many_prints_integers_as_integers(target: str) -> None:
    run = await cli(target, "execute-many", stdin="calculate 6 * 7\n")
    assert run.code == 0, run.err
    line = json.loads(run.out)

    def numbers(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [n for item in value.values() for n in numbers(item)]
        if isinstance(value, list):
            return [n for item in value for n in numbers(item)]
        return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []

    found = numbers(line["result"]["result"])
    assert 42 in found and all(type(n) is int for n in found if n == 42), line["result"]["result"]
    assert not [n for n in numbers(line) if isinstance(n, float) and n.is_integer()]
    assert "42.0" not in run.out


async def test_patterns_file_replaces_the_default_set(tmp_path: pathlib.Path) -> None:
    patterns = tmp_path / "patterns.yaml"
    patterns.write_text(
        yaml.safe_dump(
            {
                "patterns": [
                    {
                        "name": "only_calculation",
                        "pattern_type": "PATTERN_TYPE_INFRASTRUCTURE",
                        "trigger_pattern": r"\bcalc\s+\S",
                        "cost_tokens": 10,
                        "priority": 5,
                        "cache_ttl": 60,
                        "metadata": {"tool": "calculate"},
                    }
                ]
            }
        )
    )
    settings = make_settings(tmp_path / "data", patterns_file=patterns)
    server = await start_server(settings)
    try:
        names = [d.name for d in server.app.engine.list_definitions()]
        assert names == ["only_calculation"]
    finally:
        await server.stop(0)
        await drop_server_database(settings)


async def test_success_patterns_lifecycle(target: str) -> None:
    pattern = {
        "pattern_type": "api_optimization",
        "name": "Connection Pooling with Read Replicas",
        "description": "Optimize database queries using connection pooling and read replicas",
        "execution_trace": {"steps": ["Configure connection pool (min=10, max=50)", "Route reads to replicas"]},
        "quality_metrics": {"accuracy": 0.95},
        "tags": ["postgresql", "optimization"],
    }
    created = await cli(target, "success-patterns", "create", "--json", json.dumps(pattern))
    assert created.code == 0, created.err
    pattern_id = created.json()["pattern_id"]
    got = (await cli(target, "success-patterns", "get", pattern_id)).json()
    assert got["name"] == pattern["name"] and got["execution_trace"]["steps"][0].startswith("Configure")
    listed = (await cli(target, "success-patterns", "list", "--type", "api_optimization")).json()
    assert [p["pattern_id"] for p in listed] == [pattern_id]
    updated = await cli(
        target, "success-patterns", "update", pattern_id, "--json", '{"tags": ["postgresql", "pgbouncer"]}'
    )
    assert updated.code == 0, updated.err
    assert updated.json()["tags"] == ["postgresql", "pgbouncer"]
    assert updated.json()["name"] == pattern["name"]  # only the masked field changed
    recorded = (await cli(target, "success-patterns", "record", pattern_id, "--success")).json()
    assert int(recorded["match_count"]) == 1 and recorded["success_rate"] == 1
    matched = (await cli(target, "success-patterns", "match", "speed up slow database reads", "--limit", "3")).json()
    assert pattern_id in {m["pattern_id"] for m in matched["matched_patterns"]}
    assert (await cli(target, "success-patterns", "delete", pattern_id)).code == 0
    gone = await cli(target, "success-patterns", "get", pattern_id)
    assert gone.code == 1 and "NOT_FOUND" in gone.err
    bad = await cli(target, "success-patterns", "create", "--json", '{"no_such_field": 1}')
    assert bad.code == 2 and "no_such_field" in bad.err


async def test_layer_flag_changes_only_the_tenants_own_layer(target: str, tmp_path: pathlib.Path) -> None:
    """``--layer tenant`` on apply and delete writes the caller tenant's layer; other tenants never see it."""
    tenant = ("--metadata", "x-tenant-id=cli-layer-tenant")
    path = tmp_path / "mine.yaml"
    mine = {
        "name": "tide_tables",
        "pattern_type": "PATTERN_TYPE_INFRASTRUCTURE",
        "trigger_pattern": r"\btide\s+tables?\b",
        "cost_tokens": 20,
        "priority": 5,
        "cache_ttl": 60,
        "description": "High and low tide times.",
        "examples": ["when is high tide in the harbour"],
        "metadata": {"tool": "calculate"},
    }
    path.write_text(yaml.safe_dump({"patterns": [mine]}, sort_keys=False))
    applied = await cli(target, *tenant, "patterns", "apply", "-f", str(path), "--layer", "tenant")
    assert applied.code == 0, applied.err
    assert (await cli(target, *tenant, "patterns", "get", "tide_tables")).json()["layer"] == "PATTERN_LAYER_TENANT"
    elsewhere = await cli(target, "patterns", "get", "tide_tables")
    assert elsewhere.code == 1 and "NOT_FOUND" in elsewhere.err

    # Pruning the tenant layer considers only that layer: the global definitions it sees are not deleted.
    dry = await cli(target, *tenant, "patterns", "apply", "-f", str(path), "--layer", "tenant", "--prune", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.json()["deleted"] == [] and dry.json()["unchanged"] == ["tide_tables"]

    deleted = await cli(target, *tenant, "patterns", "delete", "tide_tables", "--layer", "tenant")
    assert deleted.code == 0, deleted.err
    assert (await cli(target, *tenant, "patterns", "get", "tide_tables")).code == 1
    assert (await cli(target, *tenant, "patterns", "get", "quick_calculation")).json()[
        "layer"
    ] == "PATTERN_LAYER_GLOBAL"
