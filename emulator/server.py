"""A running emulator: the bank, a multi-threaded HTTP server, the background ticker that
completes refreshes as wall time passes, and the webhook sender. Start, use, stop."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from emulator.app import EmulatorApp
from emulator.bank import Bank
from emulator.config import EmulatorConfig
from emulator.control import EmulatorControl

# Refresh completions fire within this much wall time of becoming due; stop() waits at most
# this long for the server loop to notice.
TICK_S = 0.05

log = logging.getLogger("emulator")


class _QuietHandler(WSGIRequestHandler):
    """One access-log line per request would drown the worker's logs under load."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s", self.requestline, code)


class Emulator:
    """The in-process emulator: `base_url = emu.start(port=0)`, ..., `emu.stop()`,
    or `with Emulator(config) as emu:` (which listens on a free loopback port)."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.bank = Bank(self.config)
        # Built once: its Idempotency-Keys, like the bank's state, outlive a stop and start.
        self._app = EmulatorApp(self.bank)
        self._server: BaseWSGIServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.base_url = ""

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port) and return the base URL."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        cfg = self.config
        self.bank.start_webhooks()
        if cfg.webhook_url:
            self.bank.add_webhook_endpoint(cfg.webhook_url, cfg.webhook_secret or "")
        with self.bank.lock:
            for _ in range(cfg.accounts):
                self.bank.create_account()
        self._server = make_server(
            host, port, self._app, threaded=True, request_handler=_QuietHandler
        )
        self.base_url = f"http://{host}:{self._server.server_port}"
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": TICK_S},
                name="emulator-http",
                daemon=True,
            ),
            threading.Thread(target=self._tick, name="emulator-ticker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self.base_url

    def _tick(self) -> None:
        while not self._stopping.wait(TICK_S):
            with self.bank.lock:
                self.bank.tick()

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.bank.stop_webhooks()
        self._server = None

    @property
    def control(self) -> EmulatorControl:
        if not self.base_url:
            raise RuntimeError("start the emulator first")
        return EmulatorControl(self.base_url)

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
