-- Leases name their holder: the replica running a delivery's attempt (NULL when none runs).
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
