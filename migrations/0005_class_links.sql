-- Who may come into a class, as the instructor decided it: kept in the database, so a
-- decision holds across reconnects, server restarts and every node sharing it. Portable
-- SQL, the same on SQLite and PostgreSQL (SQLite adds a NOT NULL column when it has a
-- default). Times are unix seconds.

-- The class's link generation: every class link and rejoin token carries the
-- generation it was signed for, and a join is refused unless it matches (the
-- instructor's own sessions excepted). Replacing the join link adds one. Classes
-- stored before this version are at 0, as are the tokens signed before it.
ALTER TABLE rooms ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;

-- Participants (or instructor sessions) the instructor removed: their id, and so every
-- token bound to it (rejoin, device), is refused for good. Kept when a participant's
-- data is erased (an erase must not let them back in); the ids are random, not names.
CREATE TABLE IF NOT EXISTS removed_participants (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    participant_id TEXT NOT NULL,
    removed_by TEXT NOT NULL,
    removed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (room_id, participant_id)
);
