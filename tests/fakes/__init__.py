"""In-memory fakes of the domain ports, for unit tests."""
