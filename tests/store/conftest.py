"""Fixtures of the vector-index and embedder tests (all prefixed ``vec_``)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Callable

import pytest

from pattern_service.store.embeddings import OnnxEmbedder
from pattern_service.store.vectors.base import VectorIndex
from pattern_service.store.vectors.edge import EdgeVectorIndex
from pattern_service.store.vectors.qdrant import QdrantVectorIndex

VecOpener = Callable[[], VectorIndex]

VEC_BACKENDS = ["edge", "qdrant_local"]


def _opener(kind: str, root: pathlib.Path) -> VecOpener:
    if kind == "edge":
        return lambda: EdgeVectorIndex(root / "edge")
    if kind == "qdrant_local":
        return lambda: QdrantVectorIndex(path=str(root / "qdrant"))
    raise AssertionError(kind)


@pytest.fixture(params=VEC_BACKENDS)
def vec_opener(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> VecOpener:
    """Opens a fresh handle on one persistent store of the parametrized backend (edge / qdrant local)."""
    return _opener(str(request.param), tmp_path)


@pytest.fixture
async def vec_index(vec_opener: VecOpener) -> AsyncIterator[VectorIndex]:
    """An open vector index of the parametrized backend, closed after the test."""
    index = vec_opener()
    yield index
    await index.close()


@pytest.fixture(scope="session")
def vec_onnx() -> OnnxEmbedder:
    """One loaded MiniLM embedder for the session (the model loads once)."""
    embedder = OnnxEmbedder(cache_size=64)
    embedder.load()
    return embedder
