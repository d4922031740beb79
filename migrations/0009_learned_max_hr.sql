-- A maximum heart rate that learns (telemetry/max_hr.py). Portable SQL.
--
-- max_hr_learned: the participant's max_hr was raised in class after a hold above it
-- (at most 10 bpm at a time), not entered by them; the class summary says so. Setting
-- one's own profile clears it.
ALTER TABLE participants ADD COLUMN max_hr_learned BOOLEAN NOT NULL DEFAULT FALSE;
