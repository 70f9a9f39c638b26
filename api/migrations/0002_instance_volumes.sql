-- Block volumes attached to an instance, in the order the guest sees them
-- (JSON: [{"id": ..., "path": ...}]).
ALTER TABLE instances ADD COLUMN volumes TEXT;
