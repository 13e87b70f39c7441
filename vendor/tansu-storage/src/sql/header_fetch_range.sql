-- Patched for gata (see PATCHES.md): the headers of every record of a fetch, in one query
-- (served by the header (topition, offset_id) index).
select h.offset_id, h.k, h.v
from header h
join topition tp on tp.id = h.topition
join topic t on tp.topic = t.id
join cluster c on t.cluster = c.id
where c.name = $1
and t.name = $2
and tp.partition = $3
and h.offset_id >= $4
and h.offset_id <= $5
order by h.offset_id;
