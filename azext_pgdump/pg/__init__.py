"""Data plane: PostgreSQL work with the local utilities. Knows nothing of az or ARM."""
