"""What every viewer source shares: a viser server and the status text at the top of its
GUI."""

import threading

import viser


class ServedPage:
    """A viser server on ``http://host:port`` with a status line (markdown).

    Args:
        host: interface to bind; 127.0.0.1 keeps the viewer private to this machine.
        port: TCP port (0 picks a free one; see :attr:`port`).
    """

    def __init__(self, host: str, port: int) -> None:
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self._status = self.server.gui.add_markdown("loading ...")

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self.server.get_port()

    @property
    def status(self) -> str:
        """The status text shown in the page (markdown)."""
        return self._status.content

    def serve_forever(self) -> None:
        """Serves until interrupted (Ctrl-C), then stops; a source that changes (a run in
        training) overrides this to follow it."""
        try:
            threading.Event().wait()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stops the server."""
        self.server.stop()
