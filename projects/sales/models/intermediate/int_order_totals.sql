with items as (
    select * from {{ ref('stg_order_items') }}
)

select
    order_id,
    cast(count(*) as integer) as item_count,
    cast(sum(quantity) as integer) as units,
    {{ mesh_macros.money('sum(line_amount)') }} as order_total
from items
group by order_id
