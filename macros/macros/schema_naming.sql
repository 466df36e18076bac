{#- Schema naming. Where each domain has storage of its own (a DuckDB file), a custom schema is
    used as written: `staging`, `marts`. On a shared warehouse (PostgreSQL, a Spark cluster's one
    metastore, ...) every domain's schemas live in one catalog, so they carry the domain's target
    schema as a prefix, as dbt's default does: `sales_staging`, `sales_marts`. Spark prefixes in a
    local session too (one rule for both: a target cannot tell its session from a cluster here).
    Models without a custom schema go to the target schema. Reached through `dispatch` (see
    README.md), so a domain can still override it. -#}
{% macro default__generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif target.type == 'duckdb' -%}
        {{ custom_schema_name | trim }}
    {%- else -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
