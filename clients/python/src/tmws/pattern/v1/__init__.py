"""Generated protobuf and gRPC modules of ``tmws.pattern.v1`` (do not edit)."""
