"""printing package (see README.md)."""
