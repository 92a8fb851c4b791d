-- The head triggers of V1 take turns per ticket. Without it, an event stored while the head of
-- its ticket finished, on two connections at once, was left without a head: the store found the
-- old head still there, and the finish looked for the next event before the store committed it
-- (a later event of the ticket then became the head and went first). The lock is held until the
-- transaction ends, so whichever comes second sees what the first committed.

CREATE FUNCTION lock_ticket_heads(owner TEXT, direction TEXT, ticket TEXT) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtext('ticket_heads'), hashtext(owner || '/' || direction || '/' || ticket));
$$;

CREATE OR REPLACE FUNCTION outbox_head_enqueued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM lock_ticket_heads(NEW.owner, NEW.direction, NEW.ticket);
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    VALUES (NEW.owner, NEW.direction, NEW.ticket, NEW.seq, NEW.tenant, NEW.next_attempt_at)
    ON CONFLICT (owner, direction, ticket) DO NOTHING;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION outbox_head_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM lock_ticket_heads(OLD.owner, OLD.direction, OLD.ticket);
    DELETE FROM ticket_heads WHERE seq = OLD.seq;
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    SELECT owner, direction, ticket, seq, tenant, next_attempt_at FROM outbox
    WHERE state = 'pending' AND owner = OLD.owner AND direction = OLD.direction AND ticket = OLD.ticket
    ORDER BY seq LIMIT 1
    ON CONFLICT (owner, direction, ticket) DO NOTHING;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION outbox_head_replayed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM lock_ticket_heads(NEW.owner, NEW.direction, NEW.ticket);
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    VALUES (NEW.owner, NEW.direction, NEW.ticket, NEW.seq, NEW.tenant, NEW.next_attempt_at)
    ON CONFLICT (owner, direction, ticket) DO UPDATE
        SET seq = excluded.seq, tenant = excluded.tenant, next_attempt_at = excluded.next_attempt_at
        WHERE excluded.seq < ticket_heads.seq;
    RETURN NULL;
END $$;
