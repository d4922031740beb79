-- Accounts: users, their login sessions and one-time links (first-run setup, invites,
-- password resets). Portable SQL, the same on SQLite and PostgreSQL. Times are unix
-- seconds. Secrets are never stored: a session or link is found by the SHA-256 of its
-- secret (random, 256 bits, so a fast hash is enough); passwords are argon2 hashes.
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    -- Stored lower-cased by the application; the index below refuses case variants
    -- even from a hand-written INSERT.
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'instructor', 'participant')),
    -- NULL until the user sets one through a one-time link: no login until then.
    password_hash TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS users_email ON users (lower(email));

CREATE TABLE IF NOT EXISTS login_sessions (
    secret_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Not a credential on its own: the page reads it from GET /api/auth/me and sends
    -- it back in X-CSRF-Token, which another site's page cannot.
    csrf_token TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS login_sessions_user ON login_sessions (user_id);

CREATE TABLE IF NOT EXISTS one_time_links (
    token_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('setup', 'invite', 'reset')),
    -- A setup link belongs to nobody yet (it creates the first admin); the others to
    -- the user whose password they set.
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION,
    CHECK ((purpose = 'setup') = (user_id IS NULL))
);

CREATE INDEX IF NOT EXISTS one_time_links_user ON one_time_links (user_id);
