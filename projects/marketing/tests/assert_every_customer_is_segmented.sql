-- Every customer of the customers domain appears in the segmentation exactly once.
select customers.customer_id
from {{ ref('customers', 'dim_customers') }} as customers
left join {{ ref('customer_segments') }} as segments
    on customers.customer_id = segments.customer_id
where segments.customer_id is null
