with source as (
    select * from {{ source('crm', 'customers') }}
)

select
    cast(customer_id as integer) as customer_id,
    trim(first_name) as first_name,
    trim(last_name) as last_name,
    lower(trim(email)) as email,
    upper(country_code) as country_code,
    cast(signup_date as date) as signup_date,
    cast(marketing_opt_in as boolean) as marketing_opt_in,
    _loaded_at
from source
