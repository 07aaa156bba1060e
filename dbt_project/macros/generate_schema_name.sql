{# Schemas are named as configured (staging, features, marts), not prefixed with the
   target schema: product teams read marts.user_recommendations, not main_marts.... #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name else target.schema }}
{%- endmacro %}
