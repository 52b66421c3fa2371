"""The configuration: its schema, and reading the file without trusting it."""
