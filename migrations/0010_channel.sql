-- depends: 0003_sms
-- The channel worker's tables for voice and e-mail, the shape of SMS's (docs/channel.md): one row
-- per recipient of an alert version, and the operator's references that lead a late answer back
-- to its row. Columns keep SMS's names: `operator` is the route (trunk, relay), `segments` the
-- communication units, `message_ids` the operator's references (call id, Message-ID), `bind` the
-- connection that carried the delivery.

CREATE TABLE voice_messages (LIKE sms_messages INCLUDING ALL) WITH (fillfactor = 70);
CREATE TABLE voice_message_ids (LIKE sms_message_ids INCLUDING ALL);
CREATE TABLE email_messages (LIKE sms_messages INCLUDING ALL) WITH (fillfactor = 70);
CREATE TABLE email_message_ids (LIKE sms_message_ids INCLUDING ALL);
