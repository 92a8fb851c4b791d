-- The W3C traceparent of the span that accepted each event (NULL when traces are off), so an
-- attempt made later, on any replica, joins the acceptance's trace. Nullable, no default: the
-- release before this one neither reads nor writes it.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS trace_context TEXT;
