-- Leases name their holder: the replica running a delivery's attempt (NULL when none runs).
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;

-- A ticket got a new head (an event stored, a delivery finished, a dead letter replayed): tell
-- every replica listening, so their dispatchers look now instead of at their next poll.
-- Notifications are sent at commit, once per transaction, on a channel of the store's schema
-- (bridges on other schemas of the database are not woken).
CREATE FUNCTION notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dolphin_bridge_due:' || current_schema(), '');
    RETURN NULL;
END $$;
CREATE TRIGGER ticket_heads_notify AFTER INSERT ON ticket_heads
FOR EACH STATEMENT EXECUTE FUNCTION notify_due();
