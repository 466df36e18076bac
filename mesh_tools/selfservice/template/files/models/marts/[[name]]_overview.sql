-- A starter data product: [% if product %]it reads [[ product.project ]]'s [[ product.name ]] and [% endif %]counts rows.
-- Replace it with the domain's own products.
[% if product %]
with upstream as (
    select count(*) as upstream_rows
    from {{ ref('[[ product.project ]]', '[[ product.name ]]') }}
),

examples as (
    select count(*) as example_rows
    from {{ ref('stg_[[ name ]]__examples') }}
)

select
    1 as overview_id,
    upstream.upstream_rows,
    examples.example_rows
from upstream
cross join examples
[% else %]
select
    1 as overview_id,
    count(*) as example_rows
from {{ ref('stg_[[ name ]]__examples') }}
[% endif %]
