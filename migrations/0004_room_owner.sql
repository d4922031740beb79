-- Who created a class: the instructor's (or admin's) account. Nullable: classes made
-- before accounts existed have no owner and keep working; deleting an account keeps
-- its classes (and their summaries), ownerless. Portable SQL (SQLite allows adding a
-- column with a REFERENCES clause when its default is NULL).
ALTER TABLE rooms ADD COLUMN owner_id TEXT REFERENCES users (id) ON DELETE SET NULL;

CREATE INDEX IF NOT EXISTS rooms_owner ON rooms (owner_id);
