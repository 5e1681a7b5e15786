"""tracker server: gRPC metric ingestion into PostgreSQL."""

__version__ = "0.1.0"
