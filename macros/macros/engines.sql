{#- Engine differences, handled once here for every domain (DuckDB is the default; Spark scales out).

    Contracts are written with portable type names (varchar, integer, double, decimal(p, s),
    date, timestamp, boolean, bigint). Spark refuses `varchar` without a length, so its contract
    check casts with Spark's own names. Not-null constraints are enforced by DuckDB; Spark's
    Parquet tables cannot enforce them, so dbt-spark skips them there (the not_null tests still run). -#}

{% macro spark_type(data_type) -%}
    {%- set t = (data_type or '') | trim | lower -%}
    {%- if t in ('varchar', 'text', 'string', 'character varying') or t.startswith('varchar(') -%}string
    {%- elif t in ('integer', 'int4') -%}int
    {%- elif t in ('int8', 'long') -%}bigint
    {%- elif t in ('float8', 'double precision') -%}double
    {%- elif t in ('bool',) -%}boolean
    {%- else -%}{{ data_type }}
    {%- endif -%}
{%- endmacro %}

{% macro spark__get_empty_schema_sql(columns) %}
    {%- set missing = [] -%}
    select
    {% for i in columns %}
        {%- set col = columns[i] -%}
        {%- if col['data_type'] is not defined or col['data_type'] is none -%}{%- do missing.append(col['name']) -%}{%- endif -%}
        {%- set col_name = adapter.quote(col['name']) if col.get('quote') else col['name'] -%}
        cast(null as {{ mesh_macros.spark_type(col['data_type']) }}) as {{ col_name }}{{ ", " if not loop.last }}
    {% endfor %}
    {%- if missing -%}{{ exceptions.column_type_missing(column_names=missing) }}{%- endif -%}
{% endmacro %}

{#- Landing files. On DuckDB a source's `meta.external_location` (a dbt-duckdb feature) reads the
    file in place. On Spark, this hook (each domain's `on-run-start`) creates the source's schema
    and a view over the same file (a relative path made absolute: a cluster reads it at the same
    path, through a shared file system), so `source()` resolves there too.
    A cluster's metastore is every domain's: the view records its domain (`mesh.domain` in its
    TBLPROPERTIES) and the hook replaces only a view of its own domain's, or an unmarked one over
    the very same file (what this hook made before it marked them). Anything else (another domain's
    landing view, the user's own table or view) is never touched: the build stops, naming the owner
    and the fix. Sources without `external_location` are the user's own tables: never created. -#}
{% macro register_landing() -%}
    {%- if target.type != 'spark' or not execute -%}{{ return('') }}{%- endif -%}
    {#- one statement per call: Spark runs one at a time -#}
    {%- set statements = [] -%}
    {%- for source in graph.sources.values() if source.package_name == project_name -%}
        {%- set location = (source.meta or {}).get('external_location') or (source.source_meta or {}).get('external_location') -%}
        {%- if location -%}
            {%- set formatted = location | replace('{name}', source.name) | replace('{identifier}', source.identifier) -%}
            {%- set found = modules.re.search("['\"]([^'\"]+\\.parquet)['\"]", formatted) -%}
            {%- if found -%}
                {#- a relative path is the project's: a cluster's server would read it against its own folder -#}
                {%- set path = found.group(1) -%}
                {%- if not (path.startswith('/') or ':' in path) and (invocation_args_dict.get('project_dir') or '').startswith('/') -%}
                    {%- set path = invocation_args_dict.get('project_dir') ~ '/' ~ path -%}
                {%- endif -%}
                {%- do statements.append((source.schema, source.identifier, path)) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set created = [] -%}
    {%- for schema, identifier, path in statements | unique -%}
        {%- if schema not in created -%}
            {%- do run_query('create schema if not exists ' ~ schema) -%}
            {%- do created.append(schema) -%}
        {%- endif -%}
        {%- set owner = mesh_macros._landing_owner(schema, identifier, path) -%}
        {%- if owner != project_name -%}
            {%- do exceptions.raise_compiler_error(mesh_macros._landing_refusal(schema, identifier, owner)) -%}
        {%- endif -%}
        {%- do run_query('create or replace view ' ~ schema ~ '.' ~ identifier ~ " tblproperties ('mesh.domain' = '"
            ~ project_name ~ "') as select * from parquet.`" ~ path ~ '`') -%}
    {%- endfor -%}
    {{ return('') }}
{%- endmacro %}

{#- Who owns the landing relation schema.identifier: this project when it does not exist yet, the
    domain its `mesh.domain` property names, this project for an unmarked view over the file at
    `path` itself, else '' (a relation the mesh did not make). -#}
{% macro _landing_owner(schema, identifier, path) -%}
    {%- set found = run_query("show tables in " ~ schema ~ " like '" ~ identifier ~ "'") -%}
    {%- if found.rows | length == 0 -%}{{ return(project_name) }}{%- endif -%}
    {%- set relation = schema ~ '.' ~ identifier -%}
    {%- for row in run_query('show tblproperties ' ~ relation).rows if row[0] == 'mesh.domain' -%}
        {{ return(row[1]) }}
    {%- endfor -%}
    {#- describe, not `show create table`: it answers for every kind of table (Hive SerDe ones too) -#}
    {%- set described = {} -%}
    {%- for row in run_query('describe table extended ' ~ relation).rows -%}
        {%- do described.update({(row[0] or '') | trim: (row[1] or '') | string}) -%}
    {%- endfor -%}
    {%- set over_path = ('parquet.`' ~ path ~ '`') in described.get('View Text', '') -%}
    {{ return(project_name if (described.get('Type', '') | trim | upper) == 'VIEW' and over_path else '') }}
{%- endmacro %}

{% macro _landing_refusal(schema, identifier, owner) -%}
    {%- set where = schema ~ '.' ~ identifier -%}
    {%- set fix = "give this domain's source a schema of its own (`schema: " ~ project_name ~ "_" ~ schema
        ~ "` on the source in its sources .yml), then build again" -%}
    {%- if owner -%}
        {{ return(project_name ~ ": the landing view " ~ where ~ " on this cluster belongs to domain " ~ owner
            ~ " (its source declares the same schema and table), and the mesh never replaces another domain's "
            ~ "relations: " ~ fix ~ ". `mesh doctor` shows the schemas and landing views of every domain.") }}
    {%- endif -%}
    {{ return(project_name ~ ": " ~ where ~ " exists on this cluster and the mesh did not make it (a table or "
        ~ "view of your own, which the mesh never replaces): " ~ fix ~ "; or, if it is an old landing view "
        ~ "nobody reads, drop it (`drop view " ~ where ~ "`).") }}
{%- endmacro %}

{#- Seeds on Spark: dbt-spark's own seed macros, with column_types in portable names translated. -#}
{% macro _spark_seed_type(model, agate_table, index) -%}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set col_name = agate_table.column_names[index] -%}
    {%- if col_name in column_override -%}{{ mesh_macros.spark_type(column_override[col_name]) }}
    {%- else -%}{{ adapter.convert_type(agate_table, index) }}{%- endif -%}
{%- endmacro %}

{% macro spark__create_csv_table(model, agate_table) %}
    {%- set quote_seed_column = model['config'].get('quote_columns', None) -%}
    {% set sql %}
        create table {{ this.render() }} (
            {%- for col_name in agate_table.column_names -%}
                {{ adapter.quote_seed_column(col_name | string, quote_seed_column) }} {{ mesh_macros._spark_seed_type(model, agate_table, loop.index0) }}
                {%- if not loop.last -%}, {%- endif -%}
            {%- endfor -%}
        )
        {{ file_format_clause() }}
        {{ partition_cols(label="partitioned by") }}
        {{ clustered_cols(label="clustered by") }}
        {{ location_clause() }}
        {{ comment_clause() }}
    {% endset %}
    {% call statement('_') -%}
        {{ sql }}
    {%- endcall %}
    {{ return(sql) }}
{% endmacro %}

{% macro spark__load_csv_rows(model, agate_table) %}
    {% set statements = [] %}
    {% for chunk in agate_table.rows | batch(get_batch_size()) %}
        {% set bindings = [] %}
        {% for row in chunk %}
            {% do bindings.extend(row) %}
        {% endfor %}
        {% set sql %}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
                ({%- for col_name in agate_table.column_names -%}
                    cast({{ get_binding_char() }} as {{ mesh_macros._spark_seed_type(model, agate_table, loop.index0) }})
                    {%- if not loop.last %},{%- endif %}
                {%- endfor -%})
                {%- if not loop.last %},{%- endif %}
            {%- endfor %}
        {% endset %}
        {% do adapter.add_query(sql, bindings=bindings, abridge_sql_log=True) %}
        {% if loop.index0 == 0 %}
            {% do statements.append(sql) %}
        {% endif %}
    {% endfor %}
    {{ return(statements[0]) }}
{% endmacro %}
