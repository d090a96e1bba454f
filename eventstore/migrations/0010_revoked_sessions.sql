-- Sessions ended by sign-out before their token expires. Every gateway
-- keeps these in memory (reloading what is new every second), so a request
-- checks them without a database round trip; a row is useless, and is
-- deleted, once its token would have expired anyway.
CREATE TABLE revoked_sessions
(
    jti        uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX revoked_sessions_revoked_at ON revoked_sessions (revoked_at);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
