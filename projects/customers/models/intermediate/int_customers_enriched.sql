with customers as (
    select * from {{ ref('stg_customers') }}
),

countries as (
    select * from {{ ref('country_codes') }}
)

select
    customers.customer_id,
    {{ dbt.concat(["customers.first_name", "' '", "customers.last_name"]) }} as full_name,
    customers.email,
    customers.country_code,
    countries.country_name,
    countries.region,
    customers.signup_date,
    customers.marketing_opt_in
from customers
left join countries
    on customers.country_code = countries.country_code
