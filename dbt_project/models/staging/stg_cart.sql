select event_date, user_id, item_id, ts
from {{ source('raw', 'cart') }}
