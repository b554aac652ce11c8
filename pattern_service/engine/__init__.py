"""The pattern execution engine: registry, router, tools, cache, executors.

Its ports (what it needs from storage, embedding and other replicas) are in
:mod:`.ports`; :func:`pattern_service.app.build_engine` wires implementations in.
"""

from pattern_service.engine.cache import LocalGenerationStore, LocalResultCache
from pattern_service.engine.engine import PatternExecutionEngine
from pattern_service.engine.ports import GenerationStore, ResultCache
from pattern_service.engine.registry import PatternRegistry
from pattern_service.engine.router import HybridDecisionRouter
from pattern_service.engine.tools import ToolCall, ToolError, ToolRegistry, ToolServices

__all__ = [
    "GenerationStore",
    "HybridDecisionRouter",
    "LocalGenerationStore",
    "LocalResultCache",
    "PatternExecutionEngine",
    "PatternRegistry",
    "ResultCache",
    "ToolCall",
    "ToolError",
    "ToolRegistry",
    "ToolServices",
]
