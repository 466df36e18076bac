-- Order history per customer, from the sales domain's orders product (latest version).
with orders as (
    select * from {{ ref('sales', 'fct_orders') }}
    where status = 'completed'
)

select
    customer_id,
    cast(count(*) as integer) as order_count,
    {{ mesh_macros.money('sum(order_total)') }} as lifetime_value,
    max(order_date) as last_order_date
from orders
group by customer_id
