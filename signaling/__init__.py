"""Socket.IO signaling on aiohttp: rooms, join links, roles, presence, chat, SDP/ICE."""
