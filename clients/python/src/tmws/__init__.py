"""The ``tmws`` namespace of the TMWS Pattern Service client distribution.

Subpackages:
    :mod:`tmws.pattern`: the Pattern Service API (generated ``v1`` modules and the typed ``client``).
"""
