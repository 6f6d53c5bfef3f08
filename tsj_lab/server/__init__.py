"""The processes tsj runs itself: the embedded PostgreSQL + TimescaleDB (Debian packages,
the TimescaleDB build, the cluster), PgBouncer in front of it, and the latency proxy.
The lowest layer above the vocabulary: it starts servers and knows no Endpoint."""
