"""Renders a CSV file as a Markdown table (table.md) with `tabulate`, a pure-Python package
from PyPI that the service brings in its `packages` folder: the server unpacks it, read-only,
at /oscar/app/lib, which is on sys.path."""

import csv
import os

from tabulate import tabulate

with open(os.environ["INPUT_FILE_PATH"], newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
header, body = (rows[0], rows[1:]) if rows else ([], [])
with open(os.path.join(os.environ["TMP_OUTPUT_DIR"], "table.md"), "w") as f:
    f.write(tabulate(body, headers=header, tablefmt="github") + "\n")
print(f"rendered {len(body)} rows")
