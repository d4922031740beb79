-- Single sign-on (issue 16, item 1): which account an OpenID Connect provider's user
-- logs into. Portable SQL, the same on SQLite and PostgreSQL. An identity is the
-- provider's issuer and its stable `sub` for the user, never the email address, so an
-- address changed at the provider still reaches the same account.
CREATE TABLE IF NOT EXISTS user_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (issuer, subject)
);

CREATE INDEX IF NOT EXISTS user_identities_user ON user_identities (user_id);
