"""How one SQL entity is mirrored in one vector collection.

A :class:`VectorBinding` is everything the generic outbox machinery
(:class:`~pattern_service.store.outbox.VectorSync`) needs to know about an
entity: the collection it lives in and that collection's payload indexes, the
ORM class and its id column (the point id), the text that is embedded, the
payload written beside the vector, and how the entity's own filter type is
translated into a :class:`~pattern_service.store.vectors.base.VectorFilter`.
Each entity declares its binding beside its store
(:mod:`.memory_binding`, :mod:`.learning_binding`); the list of all of them is
:data:`pattern_service.store.vector_bindings.VECTOR_BINDINGS`.

Adding an entity to the index: declare its binding module, append it to that
list, and add the table (ORM class and migration); nothing in the outbox or the
app changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import InstrumentedAttribute

from pattern_service.store.vectors.base import CollectionSpec, PayloadFieldType, VectorFilter

RowT = TypeVar("RowT")
FilterT = TypeVar("FilterT")


@dataclass(frozen=True)
class VectorBinding(Generic[RowT, FilterT]):
    """One entity's mirror in the vector index.

    Attributes:
        collection: Collection name (``[a-z0-9_]+``); also the key of its outbox rows.
        row_type: The ORM class of the SQL source rows.
        id_column: The primary-key column of ``row_type`` whose value is the point id (a UUID).
        payload_indexes: Payload field → index type, one per field a filter uses.
        text: ``row -> str``, the text embedded for a row.
        payload: ``(row, model_id) -> dict``, the payload stored with the row's vector.
        vector_filter: ``(tenant_id, filter) -> VectorFilter``, the entity's filter pushed
            down to the index (always scoped to the tenant).
        payload_only_updates: Rows are updated in place, often without changing their
            embedded text (a pattern's outcome or status): when the stored vector equals
            the new one, only the payload is rewritten (see ``VectorSync``). ``False``
            for append-only entities, which then skip the comparison.
    """

    collection: str
    row_type: type[RowT]
    id_column: InstrumentedAttribute[str]
    payload_indexes: Mapping[str, PayloadFieldType]
    text: Callable[[RowT], str]
    payload: Callable[[RowT, str], dict[str, Any]]
    vector_filter: Callable[[str, FilterT], VectorFilter]
    payload_only_updates: bool = False

    def spec(self, dimension: int, model_id: str) -> CollectionSpec:
        """The collection spec for an embedder.

        Args:
            dimension: Vector size of the embedder.
            model_id: The embedder's model id (stored with the collection).
        """
        return CollectionSpec(
            name=self.collection, dimension=dimension, model_id=model_id, payload_indexes=dict(self.payload_indexes)
        )

    def point_id(self, row: RowT) -> str:
        """The point id of ``row`` (its :attr:`id_column` value)."""
        return str(getattr(row, self.id_column.key))


__all__ = ["VectorBinding"]
