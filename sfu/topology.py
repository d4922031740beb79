"""Who receives whom: the class topology as a pure rule, tested alone."""

from __future__ import annotations

from .backend import Role


def receives(
    subscriber_role: Role, publisher_role: Role, gallery: bool, spotlit: bool = False
) -> bool:
    """Whether a subscriber of ``subscriber_role`` gets a publisher's media.

    The instructor (host) is seen by everyone and sees everyone; participants see
    each other only while the host has gallery mode on, and everyone sees the
    participant the host spotlights (``spotlit``: the publisher is that one). A device
    (a heart-rate bridge acting for a participant) sends data only: it receives no
    media and none of its own is forwarded. Nobody receives themselves: the caller
    never asks for that pair. A board (the studio TV's read-only view of the class)
    receives what the instructor does and sends nothing.
    """
    if subscriber_role == "device" or publisher_role in ("device", "board"):
        return False
    if subscriber_role == "board":
        return True
    if publisher_role == "host" or subscriber_role == "host":
        return True
    return gallery or spotlit
