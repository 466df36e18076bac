select
    customer_id,
    cast(count(*) as integer) as touches,
    cast(count(distinct campaign_id) as integer) as campaigns_seen,
    max(touched_at) as last_touched_at
from {{ ref('stg_touches') }}
group by customer_id
