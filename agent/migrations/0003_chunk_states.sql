-- Chunk manifests now record the SHA-256 state at the end of each chunk (one hash pass checks
-- every chunk and the whole) instead of a digest per chunk. The old lists are cleared so each
-- held artifact's manifest is computed again the first time it is asked for, and pulls in
-- progress start over (their recorded manifests are of the old kind).

UPDATE artifacts SET chunk_size = 0, chunks = '';
DELETE FROM transfers;
