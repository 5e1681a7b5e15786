"""The fast unit tier: domain code against in-memory fakes, no PostgreSQL, no network."""
