with window_purchases as (
    select * from {{ ref('fct_purchases') }}
    where event_date > {{ feature_window_start() }}
),

popularity as (
    select
        item_id,
        count(*) as purchases_6m,
        count(distinct user_id) as buyers_6m,
        sum(revenue) as revenue_6m,
        max(ts) as last_purchased_at
    from window_purchases
    group by item_id
),

priced as (
    -- Price position inside the category: a 100-unit item is cheap for TVs, dear for socks.
    select
        item_id,
        percent_rank() over (partition by category_id order by price) as price_percentile,
        ntile({{ var('price_segments') }}) over (partition by category_id order by price) as price_segment
    from {{ ref('stg_items') }}
    where price is not null
)

select
    i.item_id,
    i.category_id,
    i.price,
    priced.price_percentile,
    priced.price_segment,
    coalesce(p.purchases_6m, 0) as purchases_6m,
    coalesce(p.buyers_6m, 0) as buyers_6m,
    coalesce(p.revenue_6m, 0) as revenue_6m,
    rank() over (order by coalesce(p.purchases_6m, 0) desc) as popularity_rank,
    p.last_purchased_at
from {{ ref('stg_items') }} as i
left join priced using (item_id)
left join popularity as p using (item_id)
