"""Where the project's files are, for tests that run its commands or read its ini files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_INI = ROOT / "development.ini"
PRODUCTION_INI = ROOT / "production.ini"
