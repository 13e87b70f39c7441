"""Delta Sharing interop: the `delta-sharing` Python client from PyPI reads gata's shares like it
reads Databricks' or the reference server's.

    delta_sharing_client.py ENDPOINT TOKEN PROFILE_PATH

Writes a profile file for ENDPOINT (…/delta-sharing) and TOKEN, then prints one JSON object:
every table the client lists (share.schema.table) and, for each, the rows `load_as_pandas`
reads (event ids and contributor ids) and the table version.
"""

import json
import sys

import delta_sharing

endpoint, token, profile_path = sys.argv[1:4]
with open(profile_path, "w") as f:
    json.dump({"shareCredentialsVersion": 1, "endpoint": endpoint, "bearerToken": token}, f)

client = delta_sharing.SharingClient(profile_path)
out = {"shares": sorted(s.name for s in client.list_shares()), "tables": {}}
for table in client.list_all_tables():
    url = f"{profile_path}#{table.share}.{table.schema}.{table.name}"
    frame = delta_sharing.load_as_pandas(url)
    out["tables"][f"{table.share}.{table.schema}.{table.name}"] = {
        "event_ids": sorted(frame["event_id"].tolist()),
        "contributors": sorted(set(frame["contributor_id"].tolist())),
        "columns": list(frame.columns),
        "version": delta_sharing.get_table_version(url),
    }
print(json.dumps(out))
