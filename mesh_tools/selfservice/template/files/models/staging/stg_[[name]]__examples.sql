-- A starter staging model: one per source table, typed and renamed. Replace it with your own.
select
    cast(example_id as integer) as example_id,
    lower(label) as label
from {{ ref('[[ name ]]_examples') }}
