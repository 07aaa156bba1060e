-- One row per user with purchases in the feature window: item ids newest first, capped.
select
    user_id,
    list_slice(list(item_id order by ts desc, item_id), 1, {{ var('history_max_items') }}) as item_ids,
    list_slice(list(ts order by ts desc, item_id), 1, {{ var('history_max_items') }}) as purchased_at,
    count(*) as purchases_in_window
from {{ ref('fct_purchases') }}
where event_date > {{ feature_window_start() }}
group by user_id
