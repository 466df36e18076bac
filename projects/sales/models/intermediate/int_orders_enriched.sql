with orders as (
    select * from {{ ref('stg_orders') }}
),

totals as (
    select * from {{ ref('int_order_totals') }}
),

payments as (
    select * from {{ ref('stg_payments') }}
)

select
    orders.order_id,
    orders.customer_id,
    orders.ordered_at,
    orders.order_date,
    orders.status,
    orders.channel,
    coalesce(totals.item_count, 0) as item_count,
    coalesce(totals.order_total, {{ mesh_macros.money(0) }}) as order_total,
    payments.payment_method
from orders
left join totals on orders.order_id = totals.order_id
left join payments on orders.order_id = payments.order_id
