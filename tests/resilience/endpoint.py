"""A sink connector's side played in the test process: collects every payload it is sent."""

import socket
import threading

from wallaroo.protocol.events import Payloads, WorkerConnected
from wallaroo.protocol.sink_endpoint import SinkEndpointSession


class Endpoint:
    def __init__(self, cookie="c"):
        self.cookie = cookie
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.payloads = []
        self.connections = 0
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        session = SinkEndpointSession(cookie=self.cookie, auto_commit=True)
        conn.settimeout(0.1)
        with conn:
            while not self.stop and not session.closed:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                for event in session.receive(data):
                    if isinstance(event, WorkerConnected):
                        self.connections += 1
                    elif isinstance(event, Payloads):
                        with self.lock:
                            self.payloads.extend(event.payloads)
                out = session.take_output()
                if out:
                    conn.sendall(out)

    def lines(self):
        with self.lock:
            return b"".join(self.payloads).decode().splitlines()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.listener.close()
