"""A local SMTP server for Berth's tests: every message it receives is written to a file.

    python smtp-sink.py --port PORT --dir DIR

Each message becomes DIR/<n>.eml (the raw message as received, with `X-Envelope-From`
and `X-Envelope-To` headers added first), written to a temporary name and renamed, so a
reader never sees half a message. It prints `ready` once it listens on 127.0.0.1:PORT
and runs until killed.
"""

import argparse
import asyncio
import itertools
import os
import signal

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.count)
        head = "X-Envelope-From: {}\r\nX-Envelope-To: {}\r\n".format(
            envelope.mail_from, ", ".join(envelope.rcpt_tos)
        ).encode()
        path = os.path.join(self.directory, "{:06}.eml".format(n))
        with open(path + ".tmp", "wb") as f:
            f.write(head + envelope.original_content)
        os.rename(path + ".tmp", path)
        return "250 OK stored as {}".format(n)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    controller = Controller(Sink(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    loop = asyncio.new_event_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    controller.stop()


if __name__ == "__main__":
    main()
