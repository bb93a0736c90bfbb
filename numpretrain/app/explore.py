"""python -m numpretrain explore --ckpt RUN: a local page that shows what one run computes.

    serve(options)        Python's own ThreadingHTTPServer on 127.0.0.1 (another --host is warned
                          about), serving one offline page and a small JSON API over explore_views.py
    write_html(options)   --html FILE --text "...": the same views for one text, in one self-contained file

The page (explorer_page/: HTML, CSS and plain JavaScript that draws its own SVG and Canvas, no
library, no network) asks the API:

    GET  /                 the page            GET  /api/info      the run: kind, sizes, labels
    GET  /api/metrics?since=N                  the run's metrics.jsonl from record N on
    POST /api/predict {text, top_k}            POST /api/generate {text, max_new_tokens, temperature,
    POST /api/attention {text}                                     top_k, top_p, seed, greedy}
    POST /api/gradients {text, position, target or target_token}   POST /api/nsp {a, b}

The page can read nothing but the run the server was started on: no route takes a path, a
text longer than the model's context is refused, and every bad request (malformed JSON, an
unknown or mistyped field, a body over MAX_BODY_BYTES, an unknown route) gets a JSON
{"error": "..."} with a 4xx status. One request computes at a time (the run's lock); the
threads only keep a slow client from holding up the others.
"""

import json
import math
import os
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from numpretrain.app import explore_views as views
from numpretrain.errors import NumpretrainError
from numpretrain.storage.atomic import write_text
from numpretrain.storage.runs import RUN_FILES
from numpretrain.training.metrics_log import METRICS_FILE
from numpretrain.training.trainer import STATE_FILE

MAX_BODY_BYTES = 64 * 1024       # a request body: a context of text, several times over
REQUEST_TIMEOUT_SECONDS = 10     # a client that stops sending mid-request is dropped after this
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explorer_page")
PAGE_SCRIPTS = ("common.js", "charts.js", "predictions.js", "attention.js", "gradients.js", "graph.js", "curves.js",
                "main.js")
# The page loads nothing from anywhere: its scripts and styles are inline, its data from this server alone.
CONTENT_SECURITY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                    "img-src data:; connect-src 'self'")


class RequestError(Exception):
    """A bad request: answered with `status` and {"error": message}."""

    def __init__(self, message, status=HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


# ----- the fields each route reads: (type, default, lowest, highest) -----

TEXT = (str, None, None, None)
FIELDS = {
    "/api/predict": {"text": TEXT, "top_k": (int, 5, 1, 50)},
    "/api/generate": {"text": TEXT, "max_new_tokens": (int, 30, 1, 200), "temperature": (float, 1.0, 0.0, 10.0),
                      "top_k": (int, None, 1, None), "top_p": (float, None, 1e-9, 1.0),
                      "seed": (int, 0, 0, 2**32 - 1), "greedy": (bool, False, None, None)},
    "/api/attention": {"text": TEXT},
    "/api/gradients": {"text": TEXT, "position": (int, None, 0, None), "target": (int, None, 0, None),
                       "target_token": (str, None, None, None)},
    "/api/nsp": {"a": TEXT, "b": TEXT},
}
KIND_WORDS = {str: "a string", int: "an integer", float: "a finite number", bool: "true or false"}
VIEWS = {"/api/predict": views.predict, "/api/generate": views.generate, "/api/attention": views.attention,
         "/api/gradients": views.gradients, "/api/nsp": views.nsp}


def fits(value, kind):
    """Whether a JSON value is of `kind`: true/false is no number, 3.0 is an integer, 1e999 no finite number."""
    if isinstance(value, bool):
        return kind is bool
    if kind in (str, bool) or not isinstance(value, (int, float)):
        return isinstance(value, kind)
    if kind is int:
        return isinstance(value, int) or value.is_integer()
    return abs(value) <= sys.float_info.max if isinstance(value, int) else math.isfinite(value)


def read_fields(body, spec):
    """The request's fields as keyword arguments, each checked against `spec`; a RequestError names the first
    field that is unknown, missing, of the wrong type or out of range."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object, e.g. {\"text\": \"...\"}")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r} (this route reads {', '.join(sorted(spec))})")
    fields = {}
    for name, (kind, default, low, high) in spec.items():
        value = body.get(name, default)
        if value is None:
            if spec[name] is TEXT:
                raise RequestError(f"the field {name!r} is missing")
            fields[name] = None
            continue
        if not fits(value, kind):
            raise RequestError(f"the field {name!r} must be {KIND_WORDS[kind]}, got {json.dumps(value)[:40]}")
        value = kind(value)
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise RequestError(f"the field {name!r} must be {allowed}, got {str(value)[:40]}")
        fields[name] = value
    return fields


def finite(value):
    """JSON has no NaN or infinity (a run without clipping logs grad_norm NaN): they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def as_json(value):
    return json.dumps(finite(value), ensure_ascii=False, allow_nan=False)


# ----- the page -----

def page_html(info, text="", data=None):
    """The page, its styles and scripts inline; `data` (the views for one text) makes it a static file."""
    def read(name):
        with open(os.path.join(PAGE_DIR, name), encoding="utf-8") as f:
            return f.read()
    # "<" as \u003c inside a <script>: no text of the user's can close the script element
    embed = lambda value: as_json(value).replace("<", "\\u003c")
    scripts = "\n".join(f"<script>\n{read(name)}</script>" for name in PAGE_SCRIPTS)
    setup = {"info": info, "text": text, "data": data}
    setup = f'<script type="application/json" id="explore-setup">{embed(setup)}</script>'
    return (read("index.html").replace("<!-- STYLE -->", f"<style>\n{read('style.css')}</style>")
            .replace("<!-- SETUP -->", setup).replace("<!-- SCRIPTS -->", scripts))


# ----- the server -----

class ExplorerHandler(BaseHTTPRequestHandler):
    server_version = "numpretrain-explore"
    timeout = REQUEST_TIMEOUT_SECONDS

    def log_message(self, format, *args):     # quiet: the terminal shows the address, not every request
        pass

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a malformed request line, an unknown method) as JSON too."""
        self.close_connection = True
        self.request_version = "HTTP/1.0"             # a garbled request line leaves HTTP/0.9: no status line
        if code == HTTPStatus.NOT_IMPLEMENTED:        # a method no do_X answers: the client's mistake, not ours
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not answered here"
        self.send_json({"error": message or HTTPStatus(code).phrase}, code)

    def send_body(self, body, content_type, status=HTTPStatus.OK, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, value, status=HTTPStatus.OK):
        self.send_body(as_json(value).encode("utf-8"), "application/json; charset=utf-8", status)

    def check_host(self):
        """Bound to the loopback, answer only requests addressed to it: a web page elsewhere cannot
        rebind its own name to 127.0.0.1 and read the run through the visitor's browser."""
        if not self.server.loopback:
            return
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname
        if host not in LOOPBACK_HOSTS:
            raise RequestError(f"this server answers requests to 127.0.0.1 or localhost, not {host!r}",
                               HTTPStatus.FORBIDDEN)

    def answer(self, route):
        try:
            self.check_host()
            status, value = HTTPStatus.OK, route()
        except RequestError as error:
            status, value = error.status, {"error": str(error)}
        except (ValueError, IndexError, TypeError, NumpretrainError) as error:   # the library's checks of the input
            status, value = HTTPStatus.BAD_REQUEST, {"error": str(error)}
        except Exception as error:  # noqa: BLE001 (a bug of ours: told to the page and the terminal; serving goes on)
            traceback.print_exc()
            status, value = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {error!r}"}
        if isinstance(value, bytes):
            self.send_body(value, "text/html; charset=utf-8", headers=[("Content-Security-Policy", CONTENT_SECURITY)])
        else:
            self.send_json(value, status)

    def do_GET(self):
        url = urlsplit(self.path)
        run = self.server.run
        routes = {"/": lambda: page_html(run.info(), self.server.text).encode("utf-8"),
                  "/api/info": run.info,
                  "/api/metrics": lambda: views.metrics(run, since_of(url.query))}
        self.answer(routes.get(url.path, lambda: not_found(url.path)))

    def do_POST(self):
        path = urlsplit(self.path).path

        def route():
            if path not in VIEWS:
                return not_found(path)
            fields = read_fields(self.read_body(), FIELDS[path])
            return VIEWS[path](self.server.run, **fields)

        self.answer(route)

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError("a request body needs a Content-Length", HTTPStatus.LENGTH_REQUIRED)
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True             # its body is never read
            raise RequestError(f"the request body is {int(length):,} bytes; at most {MAX_BODY_BYTES:,} are read",
                               HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        try:
            raw = self.rfile.read(int(length))
        except TimeoutError:
            self.close_connection = True
            raise RequestError(f"the request body did not arrive within {self.timeout:g} s",
                               HTTPStatus.REQUEST_TIMEOUT) from None
        if len(raw) < int(length):
            raise RequestError(f"the request body ended after {len(raw)} of its {int(length)} bytes")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise RequestError(f"the request body is not JSON in UTF-8: {error}") from None

    def method_not_allowed(self):
        self.close_connection = True
        self.send_json({"error": f"{self.command} is not answered here: GET the page, POST to /api/..."},
                       HTTPStatus.METHOD_NOT_ALLOWED)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = method_not_allowed


def not_found(path):
    raise RequestError(f"no such page or route: {path[:80]!r}", HTTPStatus.NOT_FOUND)


def since_of(query):
    values = parse_qs(query).get("since", ["0"])
    if not values[0].isdigit():
        raise RequestError(f"since must be a record number (0, 1, 2 ...), got {values[0][:20]!r}")
    return int(values[0])


class ExplorerServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its run (views.ExploredRun) and the page's starting text."""

    daemon_threads = True             # a stuck client never keeps the process from ending
    request_queue_size = 64           # a class of 30 browsers connecting at once

    def __init__(self, run, host="127.0.0.1", port=0, text=""):
        self.run, self.text = run, text
        self.loopback = host in LOOPBACK_HOSTS
        super().__init__((host, port), ExplorerHandler)

    def handle_error(self, request, client_address):
        """A client that hung up before its answer was written is no error of the server's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


# ----- the command -----

def serve(options):
    run = views.ExploredRun(options.ckpt)
    if options.host not in LOOPBACK_HOSTS:
        print(f"warning: --host {options.host} lets other machines reach the explorer: anyone who can connect "
              f"may read {run.info()['run']} and make this computer compute", file=sys.stderr)
    try:
        server = ExplorerServer(run, options.host, options.port, options.text or "")
    except OSError as error:
        raise OSError(f"cannot listen on {options.host}:{options.port}: {error.strerror or error} "
                      "(another --port, or --port 0 for any free one)") from None
    info = run.info()
    print(f"exploring {options.ckpt} ({info['kind']}, {info['n_layer']} layers x {info['n_head']} heads) "
          f"at {server.url}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()


def static_views(run, text):
    """Everything the page shows for one text, computed now (for --html)."""
    data = {"predict": views.predict(run, text), "attention": views.attention(run, text),
            "gradients": views.gradients(run, text), "metrics": views.metrics(run)}
    if run.kind == "gpt":
        data["generate"] = views.generate(run, text, seed=0)
    return data


def check_html_path(path, run_dir):
    """--html writes a page, never over a folder or a file of the run it shows."""
    if os.path.isdir(path):
        raise ValueError(f"--html {path} is a folder; give the name of the file to write, e.g. {path}/view.html")
    own = [os.path.join(run_dir, name) for name in (*RUN_FILES, STATE_FILE, METRICS_FILE)]
    if os.path.exists(path) and any(os.path.exists(name) and os.path.samefile(path, name) for name in own):
        raise ValueError(f"--html {path} is a file of the run {run_dir}; write the page elsewhere")


def write_html(options):
    if not options.text:
        raise ValueError("--html needs --text: the text whose views the file shows")
    check_html_path(options.html, options.ckpt)
    run = views.ExploredRun(options.ckpt)
    html = page_html(run.info(), options.text, static_views(run, options.text))
    write_text(options.html, html)
    print(f"wrote {options.html} ({len(html.encode('utf-8')) / 1024:,.0f} KB): open it in any browser, offline")
