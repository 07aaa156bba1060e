-- Where the recommendations go, by category: reach, volume and how high they rank, for the
-- category managers' dashboard (and to spot a model that over-serves one category).
with recommended as (
    select r.*, coalesce(i.category_id, 'unknown') as category_id, i.price
    from {{ source('serving', 'user_recommendations') }} as r
    left join {{ ref('item_features') }} as i using (item_id)
)

select
    category_id,
    count(*) as recommendations,
    count(distinct user_id) as users_reached,
    count(distinct item_id) as distinct_items,
    count(*) / sum(count(*)) over () as share_of_recommendations,
    avg(rank) as mean_rank,
    avg(price) as mean_price,
    max(generated_at) as generated_at
from recommended
group by category_id
