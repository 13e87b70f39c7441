"""Arrow Flight SQL interop: the ADBC Flight SQL driver from PyPI (adbc-driver-flightsql) talks to
gata's Flight SQL port like any BI tool would.

    flight_sql.py URI TOKEN AUTH SQL

AUTH is `header` (every call carries `authorization: Bearer TOKEN`) or `basic` (a Flight
handshake with basic auth whose password is the token). Prints one JSON object: the tables the
driver lists (GetObjects), the schema it reads for `chat_turns` when listed, and the query's
rows or its error.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flight_sql
from adbc_driver_flightsql import DatabaseOptions

uri, token, auth, sql = sys.argv[1:5]
if auth == "header":
    kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
else:
    kwargs = {"username": "gata", "password": token}
out = {}
with flight_sql.connect(uri, db_kwargs=kwargs) as conn:
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    out["tables"] = sorted(
        t["table_name"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"] or []
        for t in schema["db_schema_tables"] or []
    )
    if "chat_turns" in out["tables"]:
        out["chat_turns_columns"] = conn.adbc_get_table_schema("chat_turns").names
    with conn.cursor() as cur:
        try:
            cur.execute(sql)
            out["rows"] = cur.fetch_arrow_table().to_pylist()
        except Exception as e:  # the driver's error, reported to the test
            out["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out, default=str))
