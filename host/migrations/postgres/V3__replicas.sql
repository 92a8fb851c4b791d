-- The replica directory: each serving process's heartbeat (when it started, when it was last
-- seen, where it listens, and the adapter version it serves per tenant as JSON). Times are epoch
-- milliseconds of the writing replica's clock.

CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    listen TEXT NOT NULL,
    adapters TEXT NOT NULL
);
CREATE INDEX replicas_last_seen ON replicas (last_seen);
