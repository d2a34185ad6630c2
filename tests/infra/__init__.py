"""Real test infrastructure: PostgreSQL servers configured like Azure, a Single Server gateway,
an HTTPS ARM emulator and a private, offline `az`. Used by the tests and by scripts/demo.py."""
