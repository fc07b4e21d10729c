"""The counter window's pages (see ui/main_window.py)."""
