"""Command-line tools that ship with the service (see ``console_scripts`` in setup.py)."""
