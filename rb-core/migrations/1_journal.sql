-- rb journal schema, version 1: the table and index written by rb before schemas were versioned.
-- A journal file created by that code (no _sqlx_migrations table) is adopted: rb checks the table has
-- exactly these columns and records this migration as applied without running it.
CREATE TABLE rb_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX rb_journal_incident ON rb_journal (incident, seq);
