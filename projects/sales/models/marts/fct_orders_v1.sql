-- Version 1 of the orders product: the original shape, kept until its deprecation date.
select
    order_id,
    customer_id,
    order_date,
    status,
    order_total as amount
from {{ ref('int_orders_enriched') }}
