-- depends: 0090_messages_holder 0100_voice_api_batches
-- Keys a btree compares cheaply (docs/sms.md, "PostgreSQL's share"). Every write of the channel
-- worker finds its row by (alert, version, address) and every receipt its reference by
-- (operator, message_id). With the alert first, each comparison of a descent read the alert (the
-- same text for every row of a campaign) and then the version and the address at offsets
-- PostgreSQL cannot cache (they follow a variable-length column); a profile of PostgreSQL under
-- bench-sms had about a fifth of its time in those comparisons. With the address (and the
-- operator's reference) first, nearly every comparison is decided by the first column, read at
-- a fixed place. Same columns, same uniqueness: ON CONFLICT (alert, version, address) still
-- names these keys. A removal's erasure, which finds a number's rows by address, now uses the
-- primary key instead of reading the whole table.
--
-- What reads one alert's rows (a batch's counts, the API repair) uses the index on
-- (alert, version). It is partial on `version > 0` (true of every row) so that PostgreSQL can use
-- it only where a query says so: the writes join on all three columns, and while statistics are
-- young (a table emptied, a first campaign) the planner chose a full index's (alert, version)
-- prefix for them, reading every row of the campaign for each recipient (bench-sms fell from
-- 15,000 to 2,100 SMS/s). Readers add `version > 0` (services/channel/store.py, `_COUNTS`).
ALTER TABLE sms_messages DROP CONSTRAINT sms_messages_pkey,
    ADD PRIMARY KEY (address, alert, version);
CREATE INDEX sms_messages_alert ON sms_messages (alert, version) WHERE version > 0;
ALTER TABLE sms_message_ids DROP CONSTRAINT sms_message_ids_pkey,
    ADD PRIMARY KEY (message_id, operator);

ALTER TABLE voice_messages DROP CONSTRAINT voice_messages_pkey,
    ADD PRIMARY KEY (address, alert, version);
CREATE INDEX voice_messages_alert ON voice_messages (alert, version) WHERE version > 0;
ALTER TABLE voice_message_ids DROP CONSTRAINT voice_message_ids_pkey,
    ADD PRIMARY KEY (message_id, operator);

ALTER TABLE email_messages DROP CONSTRAINT email_messages_pkey,
    ADD PRIMARY KEY (address, alert, version);
CREATE INDEX email_messages_alert ON email_messages (alert, version) WHERE version > 0;
ALTER TABLE email_message_ids DROP CONSTRAINT email_message_ids_pkey,
    ADD PRIMARY KEY (message_id, operator);
