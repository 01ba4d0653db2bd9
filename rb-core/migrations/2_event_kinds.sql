-- rb journal schema, version 2: every row names its event kind (the body's "event" tag: opened,
-- started, finished, maintenance, closed, ...) instead of lumping all but opened/closed under "event",
-- and an index on (kind, seq) lets a reader or a restarted engine find incidents, open steps and
-- maintenance windows without scanning every body.
UPDATE rb_journal
SET kind = json_extract(body, '$.event')
WHERE kind = 'event' AND json_valid(body) AND json_extract(body, '$.event') IS NOT NULL;
CREATE INDEX rb_journal_kind ON rb_journal (kind, seq);
