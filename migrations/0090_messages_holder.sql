-- depends: 0070_messages_fillfactor 0080_sms_api_batches
-- The consumer that holds a queued recipient's work (its consumer name), so that a copy of the
-- recipient queued again meanwhile (a resumed send, Redis's data lost and re-derived) is not sent
-- by another process while the holder is alive (services/channel/store.py, `_QUEUE`). NULL: no
-- consumer yet (an API batch just accepted) or written before this column. Not indexed: read and
-- written only with the row, by its primary key.
ALTER TABLE sms_messages ADD COLUMN holder text;
ALTER TABLE voice_messages ADD COLUMN holder text;
ALTER TABLE email_messages ADD COLUMN holder text;
