with source as (
    select * from {{ source('ads', 'touches') }}
)

select
    cast(touch_id as integer) as touch_id,
    cast(customer_id as integer) as customer_id,
    cast(campaign_id as integer) as campaign_id,
    cast(touched_at as {{ dbt.type_timestamp() }}) as touched_at
from source
