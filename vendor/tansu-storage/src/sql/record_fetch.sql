-- -*- mode: sql; sql-product: postgres; -*-
-- Copyright ⓒ 2024-2025 Peter Morgan <peter.james.morgan@gmail.com>
--
-- Licensed under the Apache License, Version 2.0 (the "License");
-- you may not use this file except in compliance with the License.
-- You may obtain a copy of the License at
--
-- http://www.apache.org/licenses/LICENSE-2.0
--
-- Unless required by applicable law or agreed to in writing, software
-- distributed under the License is distributed on an "AS IS" BASIS,
-- WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
-- See the License for the specific language governing permissions and
-- limitations under the License.

-- prepare record_fetch (text, text, integer, integer, integer, integer) as
-- Patched for gata (see PATCHES.md): the records are read in offset order and at most 1024 of
-- them before they are sized, so a fetch from the start of a backlog costs what it returns, not
-- the whole partition; the first record is returned even when it alone exceeds the byte budget,
-- as Kafka does, so a large record cannot stall its consumer.
with page as (
select

r.offset_id,
r.attributes,
r.timestamp,
r.k,
r.v,
r.producer_id,
r.producer_epoch

from

cluster c
join topic t on t.cluster = c.id
join topition tp on tp.topic = t.id
join record r on r.topition = tp.id

where

c.name = $1
and t.name = $2
and tp.partition = $3
and r.offset_id >= $4
and r.offset_id < $6

order by r.offset_id
limit 1024),

sized as (
select

offset_id,
attributes,
timestamp,
k,
v,
sum(coalesce(length(k), 0) + coalesce(length(v), 0)) over (order by offset_id) as bytes,
producer_id,
producer_epoch,
row_number() over (order by offset_id) as n

from page)

select offset_id, attributes, timestamp, k, v, bytes, producer_id, producer_epoch
from sized
where bytes < $5 or n = 1
order by offset_id;
