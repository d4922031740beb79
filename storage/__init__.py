"""Persistence of classes, participants and chat, and the schema's migrations runner.

A leaf package: it imports nothing of PulseRoom's other packages, so the signaling
layer, telemetry and the composition root (``pulseroom/``) can all use it.
"""
