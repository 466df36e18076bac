with source as (
    select * from {{ source('shop', 'order_items') }}
)

select
    cast(order_item_id as bigint) as order_item_id,
    cast(order_id as integer) as order_id,
    product_sku,
    cast(quantity as integer) as quantity,
    {{ mesh_macros.money('unit_price') }} as unit_price,
    {{ mesh_macros.money('quantity * unit_price') }} as line_amount
from source
