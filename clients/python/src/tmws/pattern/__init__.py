"""The Pattern Service API.

Subpackages:
    :mod:`tmws.pattern.v1`: generated protobuf messages and gRPC stubs (package ``tmws.pattern.v1``).
    :mod:`tmws.pattern.client`: the typed asyncio client and the ``tmws-pattern`` command line.
"""
