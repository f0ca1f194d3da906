-- depends: 0004_alerting
-- The public CAP feed (docs/capfeed.md) renders its documents when an alert changes, not per
-- request: every new CAP message (Alert, Update, Cancel) wakes the feed processes that LISTEN.
-- The payload is the alert id; a process that missed a notification catches up on its next poll.

CREATE FUNCTION cap_messages_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A reverted send deletes its message: the feed must drop it too.
    PERFORM pg_notify('tocsin_cap', COALESCE(NEW.alert_id, OLD.alert_id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER cap_messages_changed AFTER INSERT OR UPDATE OR DELETE ON cap_messages
    FOR EACH ROW EXECUTE FUNCTION cap_messages_notify();
