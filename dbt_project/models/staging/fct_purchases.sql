{#- Purchases with price and quantity filled in, one partition per day. Incremental: a run
    for days [min_date, max_date] deletes those days and inserts them again, inside the same
    transaction, so re-running a day replaces it (even when the day became empty). On Spark
    the table is partitioned by day and "delete" drops the day partitions (macros/cross_db.sql). -#}
{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    partition_by=['event_date'],
    tags=['daily'],
    pre_hook="{% if is_incremental() %}{{ recsys_delete_days(this, 'event_date', '" ~ var('min_date', '1900-01-01') ~ "', '" ~ var('max_date', '2999-12-31') ~ "') }}{% endif %}",
  )
}}

select
    p.event_date,
    p.user_id,
    p.item_id,
    p.ts,
    coalesce(p.price, i.price) as price,
    coalesce(p.quantity, 1) as quantity,
    coalesce(p.price, i.price) * coalesce(p.quantity, 1) as revenue
from {{ source('raw', 'purchases') }} as p
left join {{ ref('stg_items') }} as i using (item_id)
{% if is_incremental() %}
where p.event_date between '{{ var("min_date", "1900-01-01") }}' and '{{ var("max_date", "2999-12-31") }}'
{% endif %}
