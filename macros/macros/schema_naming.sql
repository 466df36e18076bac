{#- Schema naming: a custom schema is used as written; models without one go to the target schema.
    Reached through `dispatch` (see README.md), so a domain can still override it. -#}
{% macro default__generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
