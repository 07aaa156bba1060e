-- What a homepage card needs, one row per slot: the user's top recommendations with the
-- item's category, price and price segment, so the product team joins nothing.
select
    r.user_id,
    r.rank,
    r.item_id,
    coalesce(i.category_id, 'unknown') as category_id,
    i.price,
    i.price_segment,
    r.score,
    r.model_version,
    r.generated_at
from {{ source('serving', 'user_recommendations') }} as r
left join {{ ref('item_features') }} as i using (item_id)
where r.rank <= {{ var('homepage_feed_slots', 20) }}
