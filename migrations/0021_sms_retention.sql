-- Retention of delivery records (services/sms/retention.py): after the retention period a row
-- keeps what statistics and billing need (alert, version, operator, segments, state, times) and
-- its number is replaced by an opaque token; `erased_at` says when. The partial index finds the
-- rows still holding a number, oldest first, without scanning the erased ones.
ALTER TABLE sms_messages ADD COLUMN erased_at timestamptz;
CREATE INDEX sms_messages_not_erased ON sms_messages (created_at) WHERE erased_at IS NULL;
