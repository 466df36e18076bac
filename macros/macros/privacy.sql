{#- PII masking: products carry masked values so consumers can join on them without seeing them. -#}
{% macro mask_pii(column) -%}
    {{ dbt.hash(column) }}
{%- endmacro %}

{% macro mask_email(column) -%}
    {{ dbt.concat([dbt.hash(column), "'@'", dbt.split_part(column, "'@'", 2)]) }}
{%- endmacro %}
