-- Effort points (telemetry/effort.py). Portable SQL, the same on SQLite and PostgreSQL.
--
-- effort_settings: what the instructor set for a class (event `effort_settings`):
-- points per minute in each zone, 0 to 5, and a target, if any. A class without a row
-- uses Myzone's values (0, 1, 2, 3, 4, 4) and no target.
CREATE TABLE IF NOT EXISTS effort_settings (
    room_id TEXT PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    points_zone_0 DOUBLE PRECISION NOT NULL,
    points_zone_1 DOUBLE PRECISION NOT NULL,
    points_zone_2 DOUBLE PRECISION NOT NULL,
    points_zone_3 DOUBLE PRECISION NOT NULL,
    points_zone_4 DOUBLE PRECISION NOT NULL,
    points_zone_5 DOUBLE PRECISION NOT NULL,
    -- 'zone_minutes': target_value minutes in target_from_zone or above; 'points'.
    target_kind TEXT CHECK (target_kind IN ('zone_minutes', 'points')),
    target_value DOUBLE PRECISION,
    target_from_zone INTEGER,
    updated_at DOUBLE PRECISION NOT NULL,
    CHECK ((target_kind IS NULL) = (target_value IS NULL))
);

-- A participant who opted out of the class's leaderboard (event `leaderboard`): other
-- participants never see their points; the instructor still does. Kept across rejoins.
ALTER TABLE participants ADD COLUMN board_opt_out BOOLEAN NOT NULL DEFAULT FALSE;
