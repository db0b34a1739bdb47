-- Dashboard sessions (see core/src/access/sessions.rs). A browser signs in by pasting a
-- Berth token once; it gets a random session secret in an HttpOnly cookie, and only the
-- secret's SHA-256 is kept here. The row names the token by id, never by its text: each
-- page asks whether that token is still usable, so disabling the token (or its user, or
-- deleting either) ends the session at once. Rows past `expires_at` are refused and
-- swept.
CREATE TABLE web_sessions (
    id            uuid PRIMARY KEY,
    secret_hash   bytea NOT NULL UNIQUE,
    token_id      uuid NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX web_sessions_token ON web_sessions (token_id);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
