-- The revision counter follows the newest event inside the writing transaction itself, so a
-- write needs no statement of its own for it (one round trip less per write) and a list still
-- reads the revision its snapshot is consistent at.
CREATE TRIGGER events_advance_revision AFTER INSERT ON events
BEGIN
    UPDATE revision SET current = NEW.revision WHERE id = 0;
END;
