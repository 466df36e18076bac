-- Revenue per order: the sales domain's orders (pinned to version 2) less refunds.
with orders as (
    select * from {{ ref('sales', 'fct_orders', v=2) }}
    where status in ('completed', 'returned')
),

refunds as (
    select order_id, sum(refund_amount) as refunded
    from {{ ref('stg_refunds') }}
    group by order_id
)

select
    orders.order_id,
    orders.order_date,
    orders.order_total as gross_revenue,
    {{ mesh_macros.money('coalesce(refunds.refunded, 0)') }} as refunds
from orders
left join refunds on orders.order_id = refunds.order_id
