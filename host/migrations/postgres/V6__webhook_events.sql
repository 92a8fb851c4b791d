-- The vendors' own ids of webhook events (0.2 world's `dedupe-key`), per tenant, each with the
-- delivery first stored for it: taken in the transaction that stores the delivery, so an event
-- a vendor sends again (a retried webhook, or the same message in another webhook) within the
-- webhook window is stored once. Purged with the webhook keys.

CREATE TABLE webhook_events (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX webhook_events_age ON webhook_events (created_at);
