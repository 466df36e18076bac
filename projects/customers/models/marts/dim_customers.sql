select
    customer_id,
    full_name,
    email,
    country_code,
    country_name,
    region,
    signup_date,
    marketing_opt_in,
    {{ mesh_macros.audit_columns() }}
from {{ ref('int_customers_enriched') }}
