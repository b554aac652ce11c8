"""Fixtures of the client tests: a real ``grpc.aio`` server with canned servicers (see ``fake_pattern_server``)."""

from fake_pattern_server import client, server

__all__ = ["client", "server"]
