"""Where tests find facts and originals: spec key lists ship in tests/data; the lite originals
live in the shared folder beside the checkout (../shared/lite-sources) or $FACECLI_LITE_SOURCES."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS_DIR = Path(__file__).resolve().parent / "data" / "keys"
LITE_SOURCES = Path(os.environ.get("FACECLI_LITE_SOURCES", REPO.parent / "shared" / "lite-sources"))
