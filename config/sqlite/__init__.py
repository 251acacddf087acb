"""The embedded database's backend: Django's SQLite backend with fair turns for writers (see base.py)."""
