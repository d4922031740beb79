-- Heart-rate readings, participants and a per-minute view. Portable SQL, used by the
-- embedded SQLite (PostgreSQL takes 0002_heart_rate.postgresql.sql instead).
-- time is the device's time in unix seconds; rr_ms is a JSON array of milliseconds.
CREATE TABLE IF NOT EXISTS heart_rate (
    time DOUBLE PRECISION NOT NULL,
    room_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    bpm SMALLINT NOT NULL,
    rr_ms TEXT NOT NULL DEFAULT '[]',
    energy_kj INTEGER,
    contact BOOLEAN
);

-- A re-sent reading carries the same seq and device time: INSERT ... ON CONFLICT DO
-- NOTHING stores it once. (time is part of the key because TimescaleDB needs the
-- partitioning column in every unique index; the same key is kept on every backend.)
CREATE UNIQUE INDEX IF NOT EXISTS heart_rate_reading
    ON heart_rate (room_id, participant_id, seq, time);

CREATE INDEX IF NOT EXISTS heart_rate_participant_time
    ON heart_rate (room_id, participant_id, time);

CREATE TABLE IF NOT EXISTS participants (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at DOUBLE PRECISION NOT NULL,
    age INTEGER,
    max_hr INTEGER,
    resting_hr INTEGER,
    weight_kg DOUBLE PRECISION,
    sex TEXT,
    zone_method TEXT NOT NULL DEFAULT 'hrmax',
    PRIMARY KEY (room_id, id)
);

-- bucket: unix seconds of the minute's start.
CREATE VIEW IF NOT EXISTS heart_rate_1m AS
SELECT
    CAST(time / 60 AS INTEGER) * 60 AS bucket,
    room_id,
    participant_id,
    AVG(bpm) AS avg_bpm,
    MAX(bpm) AS max_bpm,
    MIN(bpm) AS min_bpm,
    COUNT(*) AS readings
FROM heart_rate
GROUP BY CAST(time / 60 AS INTEGER), room_id, participant_id;
