select user_id, gender, age, geo
from {{ source('raw', 'users') }}
