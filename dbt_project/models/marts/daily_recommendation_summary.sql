{{ config(materialized='incremental', unique_key=['summary_date', 'model_version'], incremental_strategy='delete+insert') }}

-- One row per generation day and model: how many users got how many recommendations, how much
-- of the catalog they cover, and how concentrated they are on the most recommended items.
-- Incremental: earlier days stay as they were when the recommendations are regenerated.
with recommended as (
    select *, cast(generated_at as date) as summary_date
    from {{ source('serving', 'user_recommendations') }}
    {% if is_incremental() %}
    where cast(generated_at as date) >= (select coalesce(max(summary_date), date '1970-01-01') from {{ this }})
    {% endif %}
),

item_counts as (
    select summary_date, model_version, item_id, count(*) as times
    from recommended
    group by summary_date, model_version, item_id
),

top_items as (
    -- Top bias: the share of recommendations that go to the 10 most recommended items.
    select summary_date, model_version, sum(times) as top_item_recommendations
    from (
        select *, row_number() over (partition by summary_date, model_version order by times desc, item_id) as item_rank
        from item_counts
    )
    where item_rank <= 10
    group by summary_date, model_version
),

catalog as (
    select count(*) as items from {{ ref('stg_items') }}
)

select
    summary_date,
    model_version,
    count(distinct user_id) as users,
    count(*) as recommendations,
    count(distinct item_id) as distinct_items,
    count(distinct item_id) / any_value(catalog.items) as catalog_coverage,
    any_value(t.top_item_recommendations) / count(*) as top_10_item_share,
    avg(score) as mean_score,
    max(generated_at) as generated_at
from recommended
left join top_items as t using (summary_date, model_version)
cross join catalog
group by summary_date, model_version
