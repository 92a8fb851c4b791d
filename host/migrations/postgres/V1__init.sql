-- The PostgreSQL store: the same tables as the embedded SQLite store, and `ticket_heads` kept by
-- triggers in the transaction of every write, whichever replica (or command) makes it.
-- Times are epoch milliseconds of the bridge's clock.

CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    owner TEXT NOT NULL,
    direction TEXT NOT NULL,
    ticket TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_base INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX outbox_heads ON outbox (owner, direction, ticket, seq) WHERE state = 'pending';
CREATE INDEX outbox_finished ON outbox (state, finished_at);
CREATE INDEX outbox_pending_tenant ON outbox (tenant, created_at) WHERE state = 'pending';

CREATE TABLE idempotency (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_age ON idempotency (created_at);

CREATE TABLE webhooks (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX webhooks_age ON webhooks (created_at);

CREATE TABLE readiness_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at BIGINT NOT NULL,
    pad BYTEA NOT NULL
);

CREATE TABLE kv (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (tenant, key)
);

CREATE TABLE tickets (
    owner TEXT NOT NULL,
    ticket_number TEXT NOT NULL,
    channel TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    contact_id TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (owner, ticket_number)
);
CREATE INDEX tickets_age ON tickets (updated_at);
CREATE INDEX tickets_contact ON tickets (owner, contact_id);

-- The pending delivery at the head of each (owner, direction, ticket): what may be delivered
-- next. Finding due work costs per due head, not per pending row.
CREATE TABLE ticket_heads (
    owner TEXT NOT NULL,
    direction TEXT NOT NULL,
    ticket TEXT NOT NULL,
    seq BIGINT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    PRIMARY KEY (owner, direction, ticket)
);
CREATE INDEX ticket_heads_due ON ticket_heads (next_attempt_at, seq);

-- A pending delivery was stored: it is the head of its ticket unless the ticket has one.
CREATE FUNCTION outbox_head_enqueued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    VALUES (NEW.owner, NEW.direction, NEW.ticket, NEW.seq, NEW.tenant, NEW.next_attempt_at)
    ON CONFLICT (owner, direction, ticket) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_head_enqueued AFTER INSERT ON outbox
FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION outbox_head_enqueued();

-- A pending delivery was claimed, rescheduled or moved to another tenant.
CREATE FUNCTION outbox_head_rescheduled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ticket_heads SET next_attempt_at = NEW.next_attempt_at, tenant = NEW.tenant WHERE seq = NEW.seq;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_head_rescheduled AFTER UPDATE OF next_attempt_at, tenant ON outbox
FOR EACH ROW WHEN (OLD.state = 'pending' AND NEW.state = 'pending') EXECUTE FUNCTION outbox_head_rescheduled();

-- A pending delivery is pending no more (delivered, dead or deleted): the next pending delivery
-- of its ticket, if any, becomes the head.
CREATE FUNCTION outbox_head_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ticket_heads WHERE seq = OLD.seq;
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    SELECT owner, direction, ticket, seq, tenant, next_attempt_at FROM outbox
    WHERE state = 'pending' AND owner = OLD.owner AND direction = OLD.direction AND ticket = OLD.ticket
    ORDER BY seq LIMIT 1
    ON CONFLICT (owner, direction, ticket) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_head_finished AFTER UPDATE OF state ON outbox
FOR EACH ROW WHEN (OLD.state = 'pending' AND NEW.state <> 'pending') EXECUTE FUNCTION outbox_head_released();
CREATE TRIGGER outbox_head_deleted AFTER DELETE ON outbox
FOR EACH ROW WHEN (OLD.state = 'pending') EXECUTE FUNCTION outbox_head_released();

-- A dead letter was replayed: it is the head of its ticket if it is older than the head.
CREATE FUNCTION outbox_head_replayed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    VALUES (NEW.owner, NEW.direction, NEW.ticket, NEW.seq, NEW.tenant, NEW.next_attempt_at)
    ON CONFLICT (owner, direction, ticket) DO UPDATE
        SET seq = excluded.seq, tenant = excluded.tenant, next_attempt_at = excluded.next_attempt_at
        WHERE excluded.seq < ticket_heads.seq;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_head_replayed AFTER UPDATE OF state ON outbox
FOR EACH ROW WHEN (OLD.state <> 'pending' AND NEW.state = 'pending') EXECUTE FUNCTION outbox_head_replayed();
