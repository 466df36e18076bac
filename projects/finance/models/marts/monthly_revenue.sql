with revenue as (
    select * from {{ ref('int_order_revenue') }}
)

select
    cast({{ dbt.date_trunc('month', 'order_date') }} as date) as revenue_month,
    cast(count(*) as integer) as orders,
    {{ mesh_macros.money('sum(gross_revenue)') }} as gross_revenue,
    {{ mesh_macros.money('sum(refunds)') }} as refunds,
    {{ mesh_macros.money('sum(gross_revenue) - sum(refunds)') }} as net_revenue,
    {{ mesh_macros.audit_columns() }}
from revenue
group by cast({{ dbt.date_trunc('month', 'order_date') }} as date)
