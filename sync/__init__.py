"""sync package (see README.md)."""
