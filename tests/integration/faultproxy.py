"""A fault-injecting TCP proxy for the replication tests.

One listening port forwards to one target. Modes, switchable at any time:
  pass      forward both ways
  cut       close every connection and refuse new ones (a partition)
  stall     keep connections open but forward nothing (a silent link)
  throttle  forward at most `rate` bytes per second each way
  delay     forward after `delay` seconds
Threads only; bytes are never altered.
"""
import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.mode = "pass"
        self.rate = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        self.conns = []
        self.closed = False
        self.forwarded = 0
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def set(self, mode, rate=0, delay=0.0):
        with self.lock:
            self.mode = mode
            self.rate = rate
            self.delay = delay
            if mode == "cut":
                for a, b in self.conns:
                    for s in (a, b):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        s.close()
                self.conns = []

    def close(self):
        self.closed = True
        self.set("cut")
        self.lsock.close()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.mode == "cut":
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            with self.lock:
                self.conns.append((c, u))
            for src, dst in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536 if self.mode != "throttle" else max(1, min(65536, self.rate // 20)))
                if not data:
                    break
                while self.mode == "stall" and not self.closed:
                    time.sleep(0.05)
                if self.mode == "cut" or self.closed:
                    break
                if self.mode == "delay":
                    time.sleep(self.delay)
                if self.mode == "throttle" and self.rate:
                    time.sleep(len(data) / self.rate)
                dst.sendall(data)
                self.forwarded += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
