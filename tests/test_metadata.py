"""How results read in the UI: ids as integers, floats rounded, durations as durations."""

import dagster as dg
import numpy as np
import pandas as pd

from recsys_assets.metadata import duration, frame_table, plain, rounded


def test_ids_widened_to_float_by_a_missing_value_stay_integers():
    frame = pd.DataFrame({"item_id": [973905123.0, np.nan], "score": [0.123456789, 1.5], "source": ["generated", "pool"]})
    table = frame_table(frame)
    assert [column.type for column in table.schema.columns] == ["int", "float", "string"]
    assert table.records[0].data == {"item_id": 973905123, "score": 0.1235, "source": "generated"}
    assert table.records[1].data["item_id"] is None
    assert "e+08" not in str(table.records)


def test_a_float_column_of_whole_numbers_stays_float():
    assert frame_table(pd.DataFrame({"norm": [0.0, 1.0]})).schema.columns[0].type == "float"


def test_an_index_becomes_the_first_column():
    table = frame_table(pd.DataFrame({"llm": [0.5]}, index=["hit_rate"]), index="metric")
    assert table.records[0].data == {"metric": "hit_rate", "llm": 0.5}


def test_durations_read_like_durations():
    assert duration(5.23) == "5.2 s"
    assert duration(1661.96) == "27 min 42 s"
    assert duration(7300) == "2 h 01 min"


def test_reported_floats_are_rounded_in_json_too():
    reported = {"loss": dg.MetadataValue.float(2.2354309204941734), "curve": dg.MetadataValue.json({"100": 2.2354309204941734})}
    readable = rounded(reported)
    assert readable["loss"].value == 2.2354 and readable["curve"].data == {"100": 2.2354}


def test_a_table_becomes_plain_rows_for_an_alert():
    import json

    table = frame_table(pd.DataFrame({"user_id": [7], "items": [3]}))
    assert json.dumps(plain(table)) == '[{"user_id": 7, "items": 3}]'
    assert plain(dg.MetadataValue.int(3)) == 3
