-- Databases first made by the release whose V2 was `leases_and_due_notifications` still carry
-- its trigger, which sent NOTIFY inside every accepting transaction (serialising their commits
-- on the notification lock). Later releases notify apart from commits; this brings those
-- databases to the same state. On any other database it changes nothing.
DROP TRIGGER IF EXISTS ticket_heads_notify ON ticket_heads;
DROP FUNCTION IF EXISTS notify_due();
