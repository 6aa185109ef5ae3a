"""``switchboard receive``: a loopback endpoint that prints what it receives.

For trying the platform out (and debugging a route): point an endpoint at it,
and with ``--secret`` it checks each Standard Webhooks signature as a real
receiver would.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from switchboard.signatures import verify_standard_webhook

__all__ = ["serve_receiver"]


def serve_receiver(host: str, port: int, secret: str | None, status: int = 200) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if secret is None:
                verdict = "signature not checked (no --secret)"
            elif verify_standard_webhook(secret, headers, body):
                verdict = "signature OK"
            else:
                verdict = "SIGNATURE INVALID"
            try:
                shown = json.dumps(json.loads(body), indent=2)
            except ValueError:
                shown = body.decode(errors="replace")
            print(f"--- {self.path}  webhook-id={headers.get('webhook-id')}  "
                  f"type={headers.get('x-switchboard-event-type')}  {verdict}\n{shown}", flush=True)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    print(f"receiving on http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
