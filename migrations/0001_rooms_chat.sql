-- Classes and their chat. Portable SQL: runs on PostgreSQL (with or without
-- TimescaleDB) and on SQLite, the embedded default. Times are unix seconds.
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    gallery BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE IF NOT EXISTS chat_messages (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    participant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS chat_messages_room_time ON chat_messages (room_id, sent_at);
