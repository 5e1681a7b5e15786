"""Generated protobuf and gRPC code for tracker.v1 (do not edit; see scripts/gen_protos.py)."""
