-- A customer cannot have signed up after the data was built.
select customer_id, signup_date
from {{ ref('dim_customers') }}
where signup_date > cast({{ dbt.current_timestamp() }} as date)
