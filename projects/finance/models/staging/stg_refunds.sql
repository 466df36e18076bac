with source as (
    select * from {{ source('ledger', 'refunds') }}
)

select
    cast(refund_id as integer) as refund_id,
    cast(order_id as integer) as order_id,
    cast(refunded_on as date) as refunded_on,
    {{ mesh_macros.money('amount') }} as refund_amount,
    lower(reason) as reason
from source
