-- Current wishlist and cart per user: items added in the feature window and not bought
-- since they were added, newest first.
with intent as (
    select user_id, item_id, 'wishlist' as source, max(ts) as added_at
    from {{ ref('stg_wishlist') }}
    where event_date > {{ feature_window_start() }}
    group by all
    union all
    select user_id, item_id, 'cart' as source, max(ts) as added_at
    from {{ ref('stg_cart') }}
    where event_date > {{ feature_window_start() }}
    group by all
),

last_bought as (
    select user_id, item_id, max(ts) as bought_at
    from {{ ref('fct_purchases') }}
    group by all
),

open_intent as (
    select intent.*
    from intent
    left join last_bought using (user_id, item_id)
    where last_bought.bought_at is null or last_bought.bought_at < intent.added_at
)

select
    user_id,
    coalesce({{ recsys_list_slice(recsys_list_agg_ordered('item_id', 'added_at desc, item_id', filter="source = 'wishlist'"), 1, var('intent_max_items')) }}, {{ recsys_empty_list() }}) as wishlist_item_ids,
    coalesce({{ recsys_list_slice(recsys_list_agg_ordered('item_id', 'added_at desc, item_id', filter="source = 'cart'"), 1, var('intent_max_items')) }}, {{ recsys_empty_list() }}) as cart_item_ids
from open_intent
group by user_id
