-- Co-instructors (issue 16, item 5): another instructor with host rights in a class.
-- Portable SQL, the same on SQLite and PostgreSQL. A row names the class its links name
-- (a weekly series, not one week's session): co-instructing a series covers every week.
-- Deleting the class or the account removes the row; who added it stays only in the
-- audit log. Times are unix seconds.
CREATE TABLE IF NOT EXISTS co_instructors (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

CREATE INDEX IF NOT EXISTS co_instructors_user ON co_instructors (user_id);
