"""A Python service built by its author: a `wasi:cli/command` component made with
componentize-py from this file, uploaded to /system/modules like any module. Use this path
when the script runtime is not enough (your own build, dependencies baked in at build time);
otherwise a `script` on `oscar-wasm/python:3.14` needs no build at all.

It reverses the order of the input's lines into reversed.txt.

Only modules imported at build time exist at run time (componentize-py snapshots the
interpreter after importing this file), so import everything at the top."""

import os

from wit_world import exports


class Run(exports.Run):
    def run(self) -> None:
        with open(os.environ["INPUT_FILE_PATH"], encoding="utf-8") as f:
            lines = f.read().splitlines()
        out = os.path.join(os.environ["TMP_OUTPUT_DIR"], "reversed.txt")
        with open(out, "w", encoding="utf-8") as f:
            f.write("\n".join(reversed(lines)) + "\n")
        print(f"reversed {len(lines)} lines")
