"""What tests share: settings, fakes and process helpers, in one place."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
