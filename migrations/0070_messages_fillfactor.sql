-- depends: 0060_channel_retention 0021_sms_retention
-- Delivery records are updated twice after their insert (queued -> submitted -> delivered), a
-- batch at a time: at fillfactor 70 a page full of freshly queued rows had room for the new
-- versions of fewer than half of them, so about half of the submissions were not HOT updates and
-- each wrote the primary key and the retention index again. At 40 nearly every update is HOT
-- (97 % replaying the recorder's statements over 100,000 rows), the table ends smaller for the
-- lack of those dead versions, and PostgreSQL spends about a fifth less CPU per recipient
-- (docs/sms.md). Applies to pages written from now on.
ALTER TABLE sms_messages SET (fillfactor = 40);
ALTER TABLE voice_messages SET (fillfactor = 40);
ALTER TABLE email_messages SET (fillfactor = 40);
