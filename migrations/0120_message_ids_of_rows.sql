-- depends: 0110_message_keys
-- References written by submissions whose row another consumer had already finished (before
-- services/channel/store.py wrote references only for the rows it moves): they name an address
-- their row's `message_ids` does not list, so a removal, which now finds a number's references
-- through its rows (retention._ERASE_ADDRESS), would miss them; and a failure receipt for such a
-- duplicate could overwrite the row's real outcome. Deleted once.
DELETE FROM sms_message_ids i WHERE NOT EXISTS (
    SELECT 1 FROM sms_messages m
    WHERE m.address = i.address AND m.alert = i.alert AND m.version = i.version
      AND i.message_id = ANY (m.message_ids));
DELETE FROM voice_message_ids i WHERE NOT EXISTS (
    SELECT 1 FROM voice_messages m
    WHERE m.address = i.address AND m.alert = i.alert AND m.version = i.version
      AND i.message_id = ANY (m.message_ids));
DELETE FROM email_message_ids i WHERE NOT EXISTS (
    SELECT 1 FROM email_messages m
    WHERE m.address = i.address AND m.alert = i.alert AND m.version = i.version
      AND i.message_id = ANY (m.message_ids));
