-- One row per user with purchases in the feature window: item ids newest first, capped.
select
    user_id,
    {{ recsys_list_slice(recsys_list_agg_ordered('item_id', 'ts desc, item_id'), 1, var('history_max_items')) }} as item_ids,
    {{ recsys_list_slice(recsys_list_agg_ordered('ts', 'ts desc, item_id'), 1, var('history_max_items')) }} as purchased_at,
    count(*) as purchases_in_window
from {{ ref('fct_purchases') }}
where event_date > {{ feature_window_start() }}
group by user_id
