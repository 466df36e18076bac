-- A month cannot refund more than it earned.
select revenue_month, gross_revenue, refunds
from {{ ref('monthly_revenue') }}
where refunds > gross_revenue
