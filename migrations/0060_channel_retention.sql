-- Voice and e-mail delivery records keep a number or an address for the retention period only,
-- as SMS records do (0021): `erased_at` says when it was replaced by an opaque token; the partial
-- index finds the rows still holding one (services/channel/retention.py).
ALTER TABLE voice_messages ADD COLUMN erased_at timestamptz;
CREATE INDEX voice_messages_not_erased ON voice_messages (created_at) WHERE erased_at IS NULL;
ALTER TABLE email_messages ADD COLUMN erased_at timestamptz;
CREATE INDEX email_messages_not_erased ON email_messages (created_at) WHERE erased_at IS NULL;
