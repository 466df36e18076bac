-- Customer Segmentation Analysis: every customer of the customers domain, segmented by purchase
-- behaviour (sales domain) and marketing engagement (this domain).
with customers as (
    select * from {{ ref('customers', 'dim_customers') }}
),

orders as (
    select * from {{ ref('int_customer_orders') }}
),

touches as (
    select * from {{ ref('int_customer_touches') }}
),

joined as (
    select
        customers.customer_id,
        {{ mesh_macros.mask_email('customers.email') }} as email_masked,
        customers.country_code,
        customers.region,
        customers.marketing_opt_in,
        coalesce(orders.order_count, 0) as order_count,
        coalesce(orders.lifetime_value, {{ mesh_macros.money(0) }}) as lifetime_value,
        orders.last_order_date,
        coalesce(touches.touches, 0) as touches
    from customers
    left join orders on customers.customer_id = orders.customer_id
    left join touches on customers.customer_id = touches.customer_id
)

select
    customer_id,
    email_masked,
    country_code,
    region,
    marketing_opt_in,
    order_count,
    lifetime_value,
    last_order_date,
    touches,
    case
        when order_count >= 6 then 'champion'
        when order_count >= 3 then 'loyal'
        when order_count >= 1 then 'promising'
        when touches > 0 then 'engaged_prospect'
        else 'prospect'
    end as segment,
    {{ mesh_macros.audit_columns() }}
from joined
