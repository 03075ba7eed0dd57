"""oscar-wasm generic Python runtime: a wasi:cli/command component that runs a
user's script handed over at invocation time.

Build time (componentize-py pre-initialisation, a memory snapshot): this module is
imported once, and so are the standard-library modules listed below.  Only modules
imported at build time exist at run time: componentize-py does not put the stdlib's
files in the component (its sys.path entries /python, /world, /0, /bundled exist
only while it builds).  The user's script is NEVER imported here.

Run time (each invocation): Run.run() runs /oscar/app/script.py as __main__ with
sys.path = [/oscar/app, /oscar/app/lib, <snapshot entries>], so pure-Python packages
in /oscar/app/lib import from files (compiled in memory, no .pyc written).
"""

import sys

APP_DIR = "/oscar/app"  # read-only preopen given by the server per invocation
DEFAULT_SCRIPT = APP_DIR + "/script.py"
DEFAULT_LIB = APP_DIR + "/lib"

# ---------------------------------------------------------------- build time only
# Standard-library modules baked into the snapshot.  Everything else in the stdlib
# is missing at run time (ModuleNotFoundError).  Lazily-imported helpers matter too:
# _strptime (datetime.strptime), encodings.* (codecs by name), etc.
PRELOAD = """
abc argparse array ast base64 binascii bisect builtins bz2 calendar cmath codecs
collections collections.abc colorsys contextlib contextvars copy copyreg csv
dataclasses datetime decimal difflib dis enum errno fnmatch fractions functools
gc getopt gettext glob graphlib gzip hashlib heapq hmac html html.entities
html.parser http http.client http.cookies inspect io ipaddress itertools json
json.decoder json.encoder json.scanner keyword linecache locale logging
logging.handlers lzma math mimetypes numbers operator os os.path pathlib pickle
pkgutil platform pprint queue quopri random re reprlib runpy sched secrets shlex
shutil signal stat statistics string stringprep struct sys tarfile tempfile
textwrap time timeit token tokenize tomllib traceback types typing unicodedata
urllib urllib.parse urllib.request urllib.error uuid warnings weakref zipfile
zipimport zlib zoneinfo email email.message email.parser email.policy
email.utils email.mime.text email.mime.multipart xml xml.dom xml.dom.minidom
xml.etree.ElementTree xml.sax xml.sax.saxutils xml.parsers.expat plistlib
configparser filecmp fileinput optparse string.templatelib _strptime _pydatetime
_pydecimal _compression _markupbase threading concurrent.futures asyncio
importlib importlib.util importlib.machinery importlib.resources
importlib.metadata unittest unittest.mock doctest sqlite3 ctypes ssl socket
select selectors subprocess multiprocessing mmap readline curses
""".split()


def _preload():
    import importlib
    import os

    loaded, missing = [], []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as e:  # ImportError, or an extension that fails to init
            missing.append(f"{name} ({type(e).__name__}: {e})")
    # Every codec, so codecs.lookup()/bytes.decode() by name works at run time.
    home = os.environ.get("PYTHONHOME", "/python")
    for base in [p for p in sys.path if os.path.isdir(os.path.join(p, "encodings"))][:1]:
        for f in sorted(os.listdir(os.path.join(base, "encodings"))):
            if f.endswith(".py") and f != "__init__.py":
                try:
                    importlib.import_module("encodings." + f[:-3])
                except Exception as e:
                    missing.append(f"encodings.{f[:-3]} ({type(e).__name__})")
    # Shown in componentize-py's output only if the build fails; kept for inspection.
    global PRELOAD_REPORT
    PRELOAD_REPORT = {"loaded": loaded, "missing": missing, "home": home}


_preload()
del _preload

# ------------------------------------------------------------------- run time
import builtins  # noqa: E402
import os  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402

from wit_world import exports  # noqa: E402
from wit_world.imports import exit as wasi_exit  # noqa: E402
from componentize_py_types import Err  # noqa: E402


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _exit_status(code) -> int:
    """SystemExit.code -> process status, as CPython's own exit handling does."""
    if code is None:
        return 0
    if isinstance(code, bool) or not isinstance(code, int):
        # sys.exit("message"): message on stderr, status 1
        print(code, file=sys.stderr)
        return 1
    status = code & 0xFF
    return status if status or code == 0 else 1


def _run_script(script: str) -> None:
    """Runs the script as `__main__`, as `python script.py` does. Not runpy.run_path: its
    importer lookups and the import caches' invalidation took 5 of the call's 7 ms, and
    neither is needed (each call starts from the snapshot, where /oscar/app was never seen)."""
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def _main() -> int:
    script = os.environ.get("OSCAR_PYTHON_SCRIPT", DEFAULT_SCRIPT)
    lib = os.environ.get("OSCAR_PYTHON_LIB", DEFAULT_LIB)
    if not os.path.isfile(script):
        print(f"python runtime: no script at {script} "
              f"(is {APP_DIR} preopened?)", file=sys.stderr)
        return 2

    # Like `python script.py [args]`: the script's folder first, then the deps.
    sys.path[:0] = [p for p in (os.path.dirname(script), lib)
                    if os.path.isdir(p) and p not in sys.path]
    sys.dont_write_bytecode = True  # /oscar/app is read-only

    # componentize-py filled sys.argv with the host's args (argv[0] = service name).
    # Like `python script.py ARGS`; with no args, the input file is argv[1].
    extra = sys.argv[1:]
    if not extra and os.environ.get("INPUT_FILE_PATH"):
        extra = [os.environ["INPUT_FILE_PATH"]]
    sys.argv[:] = [script] + extra

    try:
        _run_script(script)
    except SystemExit as e:
        return _exit_status(e.code)
    except BaseException as e:
        # Like `python script.py`: hide this runner's frames.
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        return 1
    return 0


class Run(exports.Run):
    def run(self) -> None:
        status = _main()
        # No interpreter shutdown happens in a component: run atexit handlers
        # (logging.shutdown, user hooks) ourselves, then flush stdio.
        import atexit
        atexit._run_exitfuncs()
        _flush()
        if status != 0:
            # Traps with I32Exit(status): the server reports Exit::Status(status).
            # (wasi:cli/exit.exit-with-code, stable since WASI 0.2.12 / wasmtime 48.)
            wasi_exit.exit_with_code(status)
            raise Err(None)  # not reached; fallback = run() -> err = status 1
