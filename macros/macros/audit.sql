{#- Audit columns every data product carries: when it was built and by which dbt invocation. -#}
{% macro audit_columns() -%}
    cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }}) as _built_at,
    cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as _invocation_id
{%- endmacro %}

{#- Amounts: one decimal type on every engine, so contracts say the same everywhere. -#}
{% macro money(expression) -%}
    cast({{ expression }} as decimal(18, 2))
{%- endmacro %}

{#- The average of an amount, rounded to the cent the same way on every engine. `avg()` of a
    decimal is a DOUBLE on DuckDB and Spark but exact on PostgreSQL, so a cast of it can round a
    half cent differently; this works in whole cents (half up) and gives the same on all three. -#}
{% macro money_average(expression) -%}
    {%- set cents = 'cast(round(' ~ expression ~ ' * 100, 0) as bigint)' -%}
    {{ mesh_macros.money('floor((2 * sum(' ~ cents ~ ') + count(' ~ expression ~ ')) / (2.0 * nullif(count(' ~ expression ~ '), 0))) / 100') }}
{%- endmacro %}
