"""cardio package (see README.md)."""
