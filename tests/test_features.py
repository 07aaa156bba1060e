"""dbt feature models, built through the real dbt-duckdb run on the small marketplace."""


def test_feature_tables_cover_every_user_and_item(featured_platform):
    p = featured_platform
    users = p.query("SELECT count(*) FROM raw.users")[0][0]
    items = p.query("SELECT count(*) FROM raw.items")[0][0]
    assert p.query("SELECT count(*) FROM features.user_features")[0][0] == users
    assert p.query("SELECT count(*) FROM features.item_features")[0][0] == items
    assert p.query("SELECT count(*) FROM staging.fct_purchases")[0][0] == p.query("SELECT count(*) FROM raw.purchases")[0][0]
