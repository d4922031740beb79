"""PulseRoom: the composition root (settings, app factory, storage, CLI, bot)."""

import os

__version__ = "0.1.0"

# The server sends files (the page's scripts, recordings) by copying, not os.sendfile:
# through a veth link into a network namespace, aiohttp's sendfile path left responses
# unfinished for good in 2 of 3 runs here (the class page's ES modules never all
# arrived, so the page never started); 4 of 4 runs passed with the copy. The files are
# small (the client is ~300 KB) or rare (recordings), so the copy costs nothing anyone
# would notice. aiohttp reads the variable once, at import: this runs first in every
# `pulseroom` process. An empty AIOHTTP_NOSENDFILE set by the operator brings sendfile back.
os.environ.setdefault("AIOHTTP_NOSENDFILE", "1")
