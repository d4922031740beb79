-- The audit log: who did what, when and from where (logins and failed logins, account
-- and role changes, classes created, removals, link rotations, data exports and
-- deletions). Portable SQL. No foreign keys: an entry outlives the account or class it
-- names, and says who it was as it was then (actor_label). Times are unix seconds.
CREATE TABLE IF NOT EXISTS audit_log (
    id TEXT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    action TEXT NOT NULL,
    -- The account that acted, if any (NULL: the shell, a participant by link, the server).
    actor_id TEXT,
    actor_label TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    -- A small JSON object of what else is worth knowing (never a secret).
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
