"""Redis: the second result-cache layer, shared tenant generations and the replica bus.

Implements the engine's ports (:mod:`pattern_service.engine.ports`):
:mod:`.cache` the ``ResultCache`` and ``GenerationStore``, :mod:`.sync` the
``ReplicaBus`` (and the backend that runs them), :mod:`.vectors` the
vector-follow channel on that bus; :mod:`.link` is the connection and
:mod:`.codec` the stored value format.
"""
