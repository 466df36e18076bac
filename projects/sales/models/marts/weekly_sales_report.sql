with orders as (
    select * from {{ ref('int_orders_enriched') }}
    where status = 'completed'
)

select
    cast({{ dbt.date_trunc('week', 'ordered_at') }} as date) as week_start,
    cast(count(*) as integer) as orders,
    cast(count(distinct customer_id) as integer) as customers,
    {{ mesh_macros.money('sum(order_total)') }} as revenue,
    {{ mesh_macros.money_average('order_total') }} as average_order_value,
    {{ mesh_macros.audit_columns() }}
from orders
group by cast({{ dbt.date_trunc('week', 'ordered_at') }} as date)
