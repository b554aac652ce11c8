"""Benchmark suite of the Pattern Service against a bare grpc.aio echo server (``python -m bench.run``)."""
