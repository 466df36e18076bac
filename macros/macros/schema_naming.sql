{#- Schema naming. Where each domain has storage of its own (a DuckDB file, a local Spark
    warehouse), a custom schema is used as written: `staging`, `marts`. On a shared warehouse
    (PostgreSQL, ...) every domain's schemas live in one database, so they carry the domain's
    target schema as a prefix, as dbt's default does: `sales_staging`, `sales_marts`.
    Models without a custom schema go to the target schema. Reached through `dispatch` (see
    README.md), so a domain can still override it. -#}
{% macro default__generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif target.type in ('duckdb', 'spark') -%}
        {{ custom_schema_name | trim }}
    {%- else -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
