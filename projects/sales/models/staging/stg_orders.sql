with source as (
    select * from {{ source('shop', 'orders') }}
)

select
    cast(order_id as integer) as order_id,
    cast(customer_id as integer) as customer_id,
    cast(ordered_at as {{ dbt.type_timestamp() }}) as ordered_at,
    cast(ordered_at as date) as order_date,
    lower(status) as status,
    lower(channel) as channel
from source
