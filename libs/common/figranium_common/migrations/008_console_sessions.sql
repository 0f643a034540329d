-- Console sessions: the web console exchanges the API key for a session cookie. Only a
-- SHA-256 digest of the cookie's random value is stored (a database dump holds no usable
-- session), and `key_mark` ties the session to the API key it was opened with, so a key
-- changed anywhere (the API, FIGRANIUM_API_KEY) ends it even on a replica that missed
-- the change. Rows live here rather than in a replica's memory: any gateway serves them.
CREATE TABLE console_sessions (
    id_digest     text PRIMARY KEY,
    key_mark      text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
