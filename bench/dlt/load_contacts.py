"""Load the sandbox's contacts into PostgreSQL with dlt's rest_api source, in its fastest configuration found.

Runs in its own venv (bench/dlt/requirements.txt), never with the package's:

    /work/dltvenv/bin/python bench/dlt/load_contacts.py --base-url http://127.0.0.1:PORT/crm/rest/v2 \\
        --database-url postgresql://postgres@127.0.0.1:5439/bench_dlt --contacts 200000

The API key comes from KEAP_API_KEY. The same request as keap-pipeline's first load: /contacts with
page_size 1000, the pipeline's fields, order_by update_time asc, following next_page_token through
page_token (dlt's cursor paginator). The configuration, each chosen for speed:

- loader file format csv (PostgreSQL's COPY; dlt's default for postgres is insert_values);
- no compression of the intermediate files (data_writer.disable_compression);
- extracted files of 20,000 items, so that normalize has files to share out, and 2 normalize
  workers (processes; the machine has 2 cores);
- max_table_nesting 0: nested lists and objects (emails, phones, tags, custom fields, company)
  are kept as json columns of the one contacts table instead of child tables (dlt's default
  makes five child tables and writes each nested row separately: slower);
- write_disposition append (no merge, no staging dataset): the cheapest load dlt has.

Prints one JSON line: seconds of pipeline.run (extract + normalize + load), rows loaded, dlt's version.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--contacts", type=int, required=True, help="rows expected (checked)")
    parser.add_argument("--dataset", default="dlt_contacts")
    parser.add_argument("--pipelines-dir", default=None)
    parser.add_argument("--normalize-workers", type=int, default=2)
    parser.add_argument("--file-max-items", type=int, default=20_000)
    args = parser.parse_args()
    # dlt reads its configuration from the environment (or .dlt/config.toml); set before importing it
    os.environ["NORMALIZE__WORKERS"] = str(args.normalize_workers)
    os.environ["DATA_WRITER__DISABLE_COMPRESSION"] = "true"
    os.environ["EXTRACT__DATA_WRITER__FILE_MAX_ITEMS"] = str(args.file_max_items)
    os.environ["NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS"] = str(args.file_max_items)
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

    import dlt
    from dlt.sources.rest_api import rest_api_source

    fields = ("id,given_name,family_name,email_addresses,phone_numbers,company,tag_ids,custom_fields,"
              "create_time,update_time")
    source = rest_api_source(
        {
            "client": {
                "base_url": args.base_url.rstrip("/") + "/",
                "headers": {"X-Keap-API-Key": os.environ["KEAP_API_KEY"]},
                "paginator": {"type": "cursor", "cursor_path": "next_page_token", "cursor_param": "page_token"},
            },
            "resource_defaults": {"write_disposition": "append", "max_table_nesting": 0},
            "resources": [
                {
                    "name": "contacts",
                    "endpoint": {
                        "path": "contacts",
                        "params": {"page_size": 1000, "fields": fields, "order_by": "update_time asc"},
                        "data_selector": "contacts",
                    },
                }
            ],
        },
        max_table_nesting=0,
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt_contacts",
        pipelines_dir=args.pipelines_dir,
        destination=dlt.destinations.postgres(credentials=args.database_url),
        dataset_name=args.dataset,
    )
    started = time.perf_counter()
    pipeline.run(source, loader_file_format="csv")
    seconds = time.perf_counter() - started
    with pipeline.sql_client() as client:
        rows = client.execute_sql("select count(*) from contacts")[0][0]  # type: ignore[index]
    if rows != args.contacts:
        raise SystemExit(f"dlt loaded {rows} rows, expected {args.contacts}")
    print(json.dumps({"seconds": seconds, "rows": rows, "dlt": dlt.__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
