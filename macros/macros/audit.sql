{#- Audit columns every data product carries: when it was built and by which dbt invocation. -#}
{% macro audit_columns() -%}
    cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }}) as _built_at,
    cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as _invocation_id
{%- endmacro %}

{#- Amounts: one decimal type on every engine, so contracts say the same everywhere. -#}
{% macro money(expression) -%}
    cast({{ expression }} as decimal(18, 2))
{%- endmacro %}
