"""Counts the words of a text file: writes counts.json (the 10 most frequent words and the
totals) into the output folder. OSCAR's contract: the input file is INPUT_FILE_PATH, what
lands in TMP_OUTPUT_DIR is the result, and what is printed goes to the service's log."""

import collections
import json
import os
import re

with open(os.environ["INPUT_FILE_PATH"], encoding="utf-8", errors="replace") as f:
    words = re.findall(r"[^\W\d_]+", f.read().lower())

counts = collections.Counter(words)
result = {
    "words": len(words),
    "distinct": len(counts),
    "top": counts.most_common(10),
}
with open(os.path.join(os.environ["TMP_OUTPUT_DIR"], "counts.json"), "w") as f:
    json.dump(result, f, indent=2)
print(f"counted {len(words)} words, {len(counts)} distinct")
