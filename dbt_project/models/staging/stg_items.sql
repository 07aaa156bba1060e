select item_id, category_id, price
from {{ source('raw', 'items') }}
