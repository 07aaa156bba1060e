{#- Engine-specific SQL of the feature models, behind adapter.dispatch so that the same models
    build on DuckDB (the embedded default) and on Spark (README, "Running at scale").

    The default__ implementations emit exactly the DuckDB SQL the models were written in; the
    spark__ ones emit Spark SQL with the same result. Add an engine by adding <adapter>__
    implementations here, not by branching inside the models. -#}


{#- The day `days` days before the date `day_sql`, as a date. -#}
{% macro recsys_days_before(day_sql, days) -%}
    {{ return(adapter.dispatch('recsys_days_before')(day_sql, days)) }}
{%- endmacro %}

{% macro default__recsys_days_before(day_sql, days) -%}
    ({{ day_sql }} - interval {{ days }} day)
{%- endmacro %}

{#- Not dbt.dateadd: on Spark it round-trips through unix time and returns a timestamp, where
    the feature window compares dates. -#}
{% macro spark__recsys_days_before(day_sql, days) -%}
    date_sub({{ day_sql }}, {{ days }})
{%- endmacro %}


{#- An ordered list aggregate: the values of `value_sql` in the order of `order_by`, optionally
    over the rows matching `filter`. `order_by` is a comma-separated list of column names, each
    optionally followed by asc or desc, e.g. 'ts desc, item_id'. -#}
{% macro recsys_list_agg_ordered(value_sql, order_by, filter=none) -%}
    {{ return(adapter.dispatch('recsys_list_agg_ordered')(value_sql, order_by, filter)) }}
{%- endmacro %}

{% macro default__recsys_list_agg_ordered(value_sql, order_by, filter) -%}
    list({{ value_sql }} order by {{ order_by }}){% if filter %} filter (where {{ filter }}){% endif %}
{%- endmacro %}

{#- Spark has no ordered aggregate for arrays: collect (keys, value) structs, sort them with a
    comparator over the keys, then keep the values. Structs are never null, so null values stay
    in the list as they do in DuckDB's list(). Sort keys are assumed not null. -#}
{% macro spark__recsys_list_agg_ordered(value_sql, order_by, filter) -%}
    {%- set keys = recsys_order_terms(order_by) -%}
    transform(
        array_sort(
            collect_list(named_struct({% for key in keys %}'k{{ loop.index }}', {{ key.column }}, {% endfor %}'value', {{ value_sql }})){% if filter %} filter (where {{ filter }}){% endif %},
            (l, r) -> case
                {%- for key in keys %}
                when l.k{{ loop.index }} < r.k{{ loop.index }} then {{ 1 if key.descending else -1 }}
                when l.k{{ loop.index }} > r.k{{ loop.index }} then {{ -1 if key.descending else 1 }}
                {%- endfor %}
                else 0 end
        ),
        x -> x.value
    )
{%- endmacro %}

{#- 'ts desc, item_id' -> [{column: 'ts', descending: true}, {column: 'item_id', descending: false}] -#}
{% macro recsys_order_terms(order_by) -%}
    {%- set terms = [] -%}
    {%- for term in order_by.split(',') -%}
        {%- set words = term.split() -%}
        {%- if words | length not in (1, 2) or (words | length == 2 and words[1] | lower not in ('asc', 'desc')) -%}
            {{ exceptions.raise_compiler_error("recsys_list_agg_ordered: cannot read the order term '" ~ term ~ "' (expected: column [asc|desc])") }}
        {%- endif -%}
        {%- do terms.append({'column': words[0], 'descending': words | length == 2 and words[1] | lower == 'desc'}) -%}
    {%- endfor -%}
    {{ return(terms) }}
{%- endmacro %}


{#- Elements first..last (1-based, inclusive) of a list. -#}
{% macro recsys_list_slice(list_sql, first, last) -%}
    {{ return(adapter.dispatch('recsys_list_slice')(list_sql, first, last)) }}
{%- endmacro %}

{% macro default__recsys_list_slice(list_sql, first, last) -%}
    list_slice({{ list_sql }}, {{ first }}, {{ last }})
{%- endmacro %}

{% macro spark__recsys_list_slice(list_sql, first, last) -%}
    slice({{ list_sql }}, {{ first }}, {{ last }} - {{ first }} + 1)
{%- endmacro %}


{#- An empty list literal (its element type comes from the other branch of a coalesce). -#}
{% macro recsys_empty_list() -%}
    {{ return(adapter.dispatch('recsys_empty_list')()) }}
{%- endmacro %}

{% macro default__recsys_empty_list() -%}
    []
{%- endmacro %}

{% macro spark__recsys_empty_list() -%}
    array()
{%- endmacro %}


{#- Remove the days first_day..last_day (ISO dates, inclusive) from a table partitioned by day,
    so that an incremental run can insert them again: re-running a day replaces it, even when
    the day has become empty. -#}
{% macro recsys_delete_days(relation, day_column, first_day, last_day) -%}
    {{ return(adapter.dispatch('recsys_delete_days')(relation, day_column, first_day, last_day)) }}
{%- endmacro %}

{% macro default__recsys_delete_days(relation, day_column, first_day, last_day) -%}
    delete from {{ relation }} where {{ day_column }} between '{{ first_day }}' and '{{ last_day }}'
{%- endmacro %}

{#- Spark tables in Parquet have no DELETE, and DROP PARTITION takes no ranges: list the
    table's day partitions and drop those inside the range (nothing to drop renders an empty
    hook, which dbt skips). -#}
{% macro spark__recsys_delete_days(relation, day_column, first_day, last_day) -%}
    {%- if execute -%}
        {%- set doomed = [] -%}
        {%- for row in run_query('show partitions ' ~ relation) -%}
            {%- set day = row[0].split('=', 1)[1] -%}
            {%- if first_day <= day <= last_day -%}{%- do doomed.append(day) -%}{%- endif -%}
        {%- endfor -%}
        {%- if doomed -%}
            alter table {{ relation }} drop if exists
            {%- for day in doomed %} partition ({{ day_column }} = '{{ day }}'){{ ',' if not loop.last }}{% endfor %}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
