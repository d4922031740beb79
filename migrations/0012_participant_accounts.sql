-- Participant accounts (docs/protocol.md, "Participant accounts"). Portable SQL, the
-- same on SQLite and PostgreSQL; new tables only, nothing existing changes.
--
-- account_profiles: the zone profile a participant account keeps across classes (the
-- columns of participants' profile). A class visit linked to the account starts with
-- it, and profile changes made in class (a learned maximum too) are written back.
CREATE TABLE IF NOT EXISTS account_profiles (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    age INTEGER,
    max_hr INTEGER,
    resting_hr INTEGER,
    weight_kg DOUBLE PRECISION,
    sex TEXT CHECK (sex IN ('female', 'male')),
    zone_method TEXT NOT NULL DEFAULT 'hrmax' CHECK (zone_method IN ('hrmax', 'karvonen')),
    max_hr_learned BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at DOUBLE PRECISION NOT NULL
);

-- account_visits: which class participant is which account (one account per
-- participant of a class; an account may have many visits). Made when a logged-in
-- participant joins by a class link. Goes with the account, and with the participant
-- when their data in the class is erased.
CREATE TABLE IF NOT EXISTS account_visits (
    room_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    linked_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (room_id, participant_id),
    FOREIGN KEY (room_id, participant_id) REFERENCES participants (room_id, id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS account_visits_user ON account_visits (user_id);
