-- How many customers each campaign touched, and how many of them ordered afterwards.
with touches as (
    select * from {{ ref('stg_touches') }}
),

campaigns as (
    select * from {{ ref('stg_campaigns') }}
),

orders as (
    select customer_id, min(order_date) as first_order_date
    from {{ ref('sales', 'fct_orders') }}
    where status = 'completed'
    group by customer_id
)

select
    campaigns.campaign_id,
    campaigns.campaign_name,
    campaigns.channel,
    campaigns.budget,
    cast(count(distinct touches.customer_id) as integer) as customers_touched,
    cast(count(distinct case when orders.first_order_date >= cast(touches.touched_at as date)
        then touches.customer_id end) as integer) as customers_converted
from campaigns
left join touches on campaigns.campaign_id = touches.campaign_id
left join orders on touches.customer_id = orders.customer_id
group by campaigns.campaign_id, campaigns.campaign_name, campaigns.channel, campaigns.budget
