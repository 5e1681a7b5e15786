"""In-memory fakes of the domain's ports, for the unit tier (tests/unit)."""
