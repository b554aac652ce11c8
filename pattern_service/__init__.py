"""Pattern Service: an asyncio gRPC service that matches natural-language queries
to trigger patterns, routes them to the cheapest execution path, caches answers,
and keeps a learning store of success patterns and memories."""

__version__ = "1.0.0"
