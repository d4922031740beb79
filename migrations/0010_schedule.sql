-- Classes on a schedule (issue 16, item 4). Portable SQL, the same on SQLite and
-- PostgreSQL (SQLite adds a column with a REFERENCES clause when its default is NULL).
-- Times are unix seconds. A class stored before this version has no start time: it is
-- an instant class, in session from its creation, as before.

-- What the class is about, shown on its page and in the instructor's list.
ALTER TABLE rooms ADD COLUMN description TEXT NOT NULL DEFAULT '';
-- When it is scheduled to start (NULL: an instant class, no lobby) and for how long.
ALTER TABLE rooms ADD COLUMN starts_at DOUBLE PRECISION;
ALTER TABLE rooms ADD COLUMN duration_s INTEGER;
-- A weekly series: this row holds the one link and the schedule; each week's session is
-- a row of its own (below), so its participants, chat, heart rate and summary are its own.
ALTER TABLE rooms ADD COLUMN weekly BOOLEAN NOT NULL DEFAULT FALSE;
-- When the instructor started it: before, participants wait in the lobby.
ALTER TABLE rooms ADD COLUMN started_at DOUBLE PRECISION;
-- A session of a weekly series: the series, and which week (0: the first) it is.
ALTER TABLE rooms ADD COLUMN series_id TEXT REFERENCES rooms (id) ON DELETE CASCADE;
ALTER TABLE rooms ADD COLUMN occurrence INTEGER;

-- One row per week of a series, made by whichever join comes first (NULLs, the rows that
-- are no session, are distinct).
CREATE UNIQUE INDEX IF NOT EXISTS rooms_occurrence ON rooms (series_id, occurrence);
