"""PulseRoom: the composition root (settings, app factory, storage, CLI, bot)."""

import os

__version__ = "0.1.0"

# The server sends files (the page's scripts, recordings) by copying, not os.sendfile:
# through a veth link into a network namespace, some of the class page's scripts never
# arrived (the page never started) in 2 of 3 runs here with sendfile, 7 of 7 passed
# with the copy; a later CI run still saw it once (tests/browser_fixtures.py). The files are
# small (the client is ~300 KB) or rare (recordings), so the copy costs nothing anyone
# would notice. aiohttp reads the variable once, at import: this runs first in every
# `pulseroom` process. An empty AIOHTTP_NOSENDFILE set by the operator brings sendfile back.
os.environ.setdefault("AIOHTTP_NOSENDFILE", "1")
