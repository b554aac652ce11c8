"""The gRPC API layer: thin servicers, validation, conversion and the error mapping."""
