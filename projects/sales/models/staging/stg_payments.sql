with source as (
    select * from {{ source('shop', 'payments') }}
)

select
    cast(payment_id as integer) as payment_id,
    cast(order_id as integer) as order_id,
    lower(method) as payment_method
from source
