"""PulseRoom: the composition root (settings, app factory, storage, CLI, bot)."""

__version__ = "0.1.0"
