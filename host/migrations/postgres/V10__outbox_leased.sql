-- A claim asks whether another delivery of the ticket is leased: without this index it reads
-- every pending delivery of the ticket, which a backlog makes thousands. Idempotent, as V8 is.
CREATE INDEX IF NOT EXISTS outbox_leased ON outbox (owner, direction, ticket)
    WHERE state = 'pending' AND lease_owner IS NOT NULL;
