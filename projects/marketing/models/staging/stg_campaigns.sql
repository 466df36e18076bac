with source as (
    select * from {{ source('ads', 'campaigns') }}
)

select
    cast(campaign_id as integer) as campaign_id,
    campaign_name,
    lower(channel) as channel,
    cast(started_on as date) as started_on,
    cast(ended_on as date) as ended_on,
    {{ mesh_macros.money('budget') }} as budget
from source
