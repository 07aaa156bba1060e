with window_purchases as (
    select * from {{ ref('fct_purchases') }}
    where event_date > {{ feature_window_start() }}
),

spend as (
    select
        p.user_id,
        count(*) as purchases_6m,
        sum(p.revenue) as spend_6m,
        count(distinct p.item_id) as distinct_items_6m,
        avg(f.price_percentile) as avg_price_percentile,
        max(p.ts) as last_purchase_at
    from window_purchases as p
    left join {{ ref('item_features') }} as f using (item_id)
    group by p.user_id
),

power as (
    -- Purchasing power: how dear the user's purchases are within their categories, as a
    -- rank among buyers (0 = buys the cheapest, 1 = buys the dearest).
    select user_id, percent_rank() over (order by avg_price_percentile) as purchasing_power
    from spend
    where avg_price_percentile is not null
)

select
    u.user_id,
    u.gender,
    u.age,
    u.geo,
    coalesce(s.purchases_6m, 0) as purchases_6m,
    coalesce(s.spend_6m, 0) as spend_6m,
    coalesce(s.distinct_items_6m, 0) as distinct_items_6m,
    s.last_purchase_at,
    power.purchasing_power
from {{ ref('stg_users') }} as u
left join spend as s using (user_id)
left join power using (user_id)
