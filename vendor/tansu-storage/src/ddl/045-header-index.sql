-- Patched for gata (see PATCHES.md): record headers are read by (topition, offset_id) for every
-- fetched record; without this index each read scanned the whole header table, so draining a
-- backlog of N records with headers cost O(N^2).
create index if not exists header_topition_offset_id on header (topition, offset_id);
