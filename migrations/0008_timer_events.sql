-- The instructor's interval timer as it ran: each start (with its program), pause,
-- resume and stop, so that a participant's exported activity (TCX, FIT) has the class's
-- intervals as laps. Portable SQL; times are unix seconds (the server's clock).
CREATE TABLE IF NOT EXISTS timer_events (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    at DOUBLE PRECISION NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('start', 'pause', 'resume', 'stop')),
    -- For a start: {"title", "rounds", "phases": [{"name", "seconds", "kind"}]}.
    program TEXT
);

CREATE INDEX IF NOT EXISTS timer_events_room ON timer_events (room_id, at);
