-- The weekly report must add up to the completed orders of fct_orders, to the cent.
with report as (
    select sum(revenue) as revenue from {{ ref('weekly_sales_report') }}
),

orders as (
    select sum(order_total) as revenue from {{ ref('fct_orders') }} where status = 'completed'
)

select report.revenue, orders.revenue
from report
cross join orders
where abs(report.revenue - orders.revenue) > 0.01
