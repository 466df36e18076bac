-- Version 2: 'amount' became 'order_total', with the order's timestamp, channel, items and payment.
select
    order_id,
    customer_id,
    ordered_at,
    order_date,
    status,
    channel,
    item_count,
    order_total,
    payment_method,
    {{ mesh_macros.audit_columns() }}
from {{ ref('int_orders_enriched') }}
