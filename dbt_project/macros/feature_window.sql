{# The feature window ends at the newest purchase day in the warehouse, so features are
   reproducible for a given data state instead of drifting with the wall clock. #}
{% macro feature_window_end() -%}
    (select max(event_date) from {{ ref('fct_purchases') }})
{%- endmacro %}

{% macro feature_window_start() -%}
    ({{ feature_window_end() }} - interval {{ var('history_days') }} day)
{%- endmacro %}
