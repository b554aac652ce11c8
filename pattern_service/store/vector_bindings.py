"""Every SQL entity mirrored in the vector index, in one list.

:class:`~pattern_service.store.outbox.VectorSync` (and through it the app and
``reembed``) creates, applies, follows and reconciles exactly these
collections. Adding an entity: append its binding here (see
:mod:`pattern_service.store.binding`).
"""

from __future__ import annotations

from typing import Any

from pattern_service.store.binding import VectorBinding
from pattern_service.store.learning_binding import PATTERN_BINDING
from pattern_service.store.memory_binding import MEMORY_BINDING

#: The bindings of the service's entities: memories, success patterns.
VECTOR_BINDINGS: tuple[VectorBinding[Any, Any], ...] = (MEMORY_BINDING, PATTERN_BINDING)

__all__ = ["VECTOR_BINDINGS"]
