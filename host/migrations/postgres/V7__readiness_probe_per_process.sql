-- Each process probes readiness on a row of its own: probes of several replicas never wait
-- for each other's row lock (a paused replica's probe held the one shared row).
ALTER TABLE readiness_probe DROP CONSTRAINT readiness_probe_id_check;
