"""The pattern execution engine: registry, router, tools, cache, executors."""

from pattern_service.engine.cache import GenerationStore, LocalGenerationStore, LocalResultCache, ResultCache
from pattern_service.engine.engine import PatternExecutionEngine, build_engine
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
    "build_engine",
]
