"""``python -m pattern_service reembed``: build a new index with another embedder while serving, then switch."""

from __future__ import annotations

import asyncio
import pathlib
import sys

from process_helpers import REPO, ServerProcess, server_env

from pattern_service.startup import EXIT_CONFIG
from tmws.pattern.client import PatternClient
from tmws.pattern.v1 import SuccessPattern


async def reembed(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pattern_service",
        "reembed",
        *args,
        env=env,
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def pattern(name: str, description: str) -> SuccessPattern:
    return SuccessPattern(pattern_type="ops", name=name, description=description, tags=["reembed"])


async def test_build_while_serving_then_switch(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    env = server_env(data)  # the hashing embedder
    server = await ServerProcess(env).start()
    try:
        async with PatternClient.connect(server.target, default_timeout=30) as client:
            ids = [
                (await client.create_success_pattern(pattern(f"p{i}", text))).pattern_id
                for i, text in enumerate(
                    [
                        "Use connection pooling and read replicas for slow database reads",
                        "Cache rendered pages at the CDN edge to cut latency",
                        "Batch writes to the message queue to raise throughput",
                    ]
                )
            ]
            await client.execute("store the deploy checklist for the payments service", context={"agent": "ops"})

            code, out = await reembed(env, "--embedder", "onnx")
            assert code == 0, out
            assert "4 new vectors" in out, out
            # Reads keep working on the old index meanwhile; a second build resumes with nothing left to do.
            matches = await client.match_patterns("database reads are slow", min_confidence=0.0, limit=5)
            assert matches.matched_patterns
            code, out = await reembed(env, "--embedder", "onnx")
            assert code == 0 and "0 new vectors" in out, out

            # Written and changed after the build: the switch brings them over.
            late = await client.create_success_pattern(
                pattern("late", "Shard the tenants table by region to spread write load")
            )
            changed = SuccessPattern(pattern_id=ids[1], description="Compress images before upload to save bandwidth")
            await client.update_success_pattern(changed, ["description"])
            deleted = ids[2]
            await client.delete_success_pattern(deleted)
    finally:
        server.proc.terminate()
        await server.wait()

    code, out = await reembed(env, "--embedder", "onnx", "--switch")
    assert code == 0, out
    index = pathlib.Path(env["TMWS_QDRANT_PATH"]) if env["TMWS_QDRANT_PATH"] else data / "vectors"
    assert index.with_name(index.name + "-hashing").is_dir(), "the old index is kept"
    assert index.is_dir() and not index.with_name(index.name + "-next").exists()

    # The old embedder is now refused with the fix; the new one serves the rebuilt index.
    old = ServerProcess(env)
    refused = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pattern_service",
        "serve",
        env=old.env,
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(refused.communicate(), 120)
    assert refused.returncode == EXIT_CONFIG and b"TMWS_EMBEDDER" in output

    server = await ServerProcess({**env, "TMWS_EMBEDDER": "onnx"}).start()
    try:
        async with PatternClient.connect(server.target, default_timeout=30) as client:
            stats = await client.get_stats()
            assert {c.name: c.healthy for c in stats.components}["vector_index"]
            found = await client.match_patterns("spread the write load across regions", limit=3)
            assert found.matched_patterns[0].pattern_id == late.pattern_id
            found = await client.match_patterns("shrink pictures before uploading them", limit=3)
            assert found.matched_patterns[0].pattern_id == ids[1]
            everything = await client.match_patterns("engineering practice", min_confidence=0.0, limit=10)
            assert deleted not in {m.pattern_id for m in everything.matched_patterns}
            assert len(everything.matched_patterns) == 3
            recalled = await client.execute("recall memories about deploying payments", context={"agent": "ops"})
            assert recalled.success
            memories = recalled.result["memory"]["memories"]
            assert any("deploy checklist" in m["content"] for m in memories), memories
    finally:
        server.proc.terminate()
        await server.wait()
