"""The version of the ``tmws-pattern-client`` distribution."""

__version__ = "1.0.0"
