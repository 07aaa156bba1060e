{# The feature window ends at the newest purchase day in the warehouse, so features are
   reproducible for a given data state instead of drifting with the wall clock. #}
{% macro feature_window_end() -%}
    (select max(event_date) from {{ ref('fct_purchases') }})
{%- endmacro %}

{% macro feature_window_start() -%}
    {{ recsys_days_before(feature_window_end(), var('history_days')) }}
{%- endmacro %}
