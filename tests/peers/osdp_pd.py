"""An OSDP reader for Portier's tests: libosdp's own peripheral device (PyPI `libosdp`) on a
pseudo-terminal, driven line by line on stdin.

Prints `{"port": "/dev/pts/N"}` first: the serial device Portier opens. Then every command the
control panel sends (LED, buzzer, key set) as `{"command": {...}}`, one JSON line each.

stdin, one per line:
  card HEX BITS   present a card: osdp_RAW with BITS bits of HEX (left-aligned)
  pause           stop answering (the reader "goes away")
  resume          answer again
  state           print {"online": bool, "sc": bool}
  quit            stop
"""

import argparse
import json
import os
import sys
import threading
import tty

import osdp


class PtyChannel(osdp.Channel):
    """The master side of a pseudo-terminal, non-blocking."""

    def __init__(self, fd):
        super().__init__()
        self.fd = fd

    def read(self, max_bytes):
        try:
            return os.read(self.fd, max_bytes)
        except (BlockingIOError, OSError):
            return b""

    def write(self, buf):
        try:
            return os.write(self.fd, buf)
        except (BlockingIOError, OSError):
            return 0

    def flush(self):
        pass


def say(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def plain(value):
    if isinstance(value, (bytes, bytearray)):
        return value.hex().upper()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", type=int, default=0)
    parser.add_argument("--scbk", default=None, help="32 hex digits; none: install mode")
    args = parser.parse_args()

    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    os.set_blocking(master, False)
    port = os.ttyname(slave)

    flags = []
    scbk = None
    if args.scbk:
        scbk = bytes.fromhex(args.scbk)
    else:
        flags.append(osdp.LibFlag.InstallMode)
    info = osdp.PDInfo(args.address, PtyChannel(master), scbk=scbk, flags=flags, name="reader")
    caps = osdp.PDCapabilities([
        (osdp.Capability.LEDControl, 1, 1),
        (osdp.Capability.AudibleControl, 1, 1),
        (osdp.Capability.CommunicationSecurity, 1, 1),
        (osdp.Capability.CardDataFormat, 1, 1),
    ])
    pd = osdp.PeripheralDevice(info, caps, log_level=osdp.LogLevel.Warning)
    pd.start()
    say({"port": port})

    def commands():
        while True:
            command = pd.get_command(timeout=1)
            if command is None:
                continue
            try:
                say({"command": plain(command)})
            except Exception as e:  # a command that does not print must not stop the rest
                sys.stderr.write(f"osdp_pd: cannot print {command!r}: {e}\n")

    threading.Thread(target=commands, daemon=True).start()

    running = True
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "card":
            data = bytes.fromhex(words[1])
            event = {
                "event": osdp.Event.CardRead,
                "reader_no": 0,
                "direction": 0,
                "format": osdp.CardFormat.Unspecified,
                "length": int(words[2]),
                "data": data,
            }
            pd.submit_event(event)
        elif words[0] == "pause" and running:
            pd.stop()
            running = False
        elif words[0] == "resume" and not running:
            pd.start()
            running = True
        elif words[0] == "state":
            say({"online": pd.is_online(), "sc": pd.is_sc_active()})
        elif words[0] == "quit":
            break
    if running:
        pd.stop()
    os._exit(0)


if __name__ == "__main__":
    main()
