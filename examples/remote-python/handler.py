#!/usr/bin/env python3
"""A remote asyncjobs task handler in Python, served over NATS request-reply.

Workers (Rust `asyncjobs::RequestReply`, Go `router.RequestReply`) send each
task of type TYPE to the subject `CHORIA_AJ.H.T.<TYPE>`; this service answers
in a queue group, so any number of copies can run side by side.

Protocol (docs/processing.md section 6.2):

* request headers: `AJ-Content-Type: application/x-asyncjobs-task+json`,
  `AJ-Handler-Deadline: <RFC 3339 UTC>` (reply before then), when the
  task carries one, `traceparent` (W3C trace context of the worker's try)
  and, from Rust workers, `AJ-Cancel-Subject` (a core NATS subject on which
  a cancel of the task is announced: a long handler may subscribe to it and
  stop; this one is quick and does not);
* request body: the task JSON; its `payload` is base64 of the payload bytes
  (for tasks made by asyncjobs, the payload's JSON encoding);
* reply: a body on success (the worker stores it as the task result, base64
  encoded like Go does), or an empty body with header `AJ-Error: <text>`
  (the task is retried) or `AJ-Terminate: <text>` (the task is terminated).

This handler sums numbers: payload `{"numbers": [1, 2, 3]}` completes with
`{"sum": 6, "count": 3, "handled_by": "python", "try": 1}`. A payload that is
not of that shape terminates the task (retrying cannot fix it). A payload
field `"fail_tries": N` makes the first N tries fail with `AJ-Error`, to show
retries.

Run:  python handler.py --url nats://127.0.0.1:4222 --type py:sum
Needs nats-py (scripts/nats-server-env.sh installs it into .venv-nats and
exports ASYNCJOBS_PYTHON).
"""

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
from datetime import datetime, timezone

import nats

CONTENT_TYPE = "application/x-asyncjobs-task+json"


class Failure(Exception):
    """The task failed; retried unless `terminate` is set."""

    def __init__(self, message, terminate=False):
        super().__init__(message)
        self.terminate = terminate


def subject_for(task_type):
    return "CHORIA_AJ.H.T." + (task_type or "catchall")


def decode_payload(task):
    raw = task.get("payload")
    if raw is None:
        return None
    try:
        return json.loads(base64.b64decode(raw))
    except ValueError as e:
        raise Failure(f"payload is not base64 JSON: {e}", terminate=True)


async def handle(task, traceparent=None):
    """The actual work: returns the reply body, or raises Failure.

    `traceparent` is the W3C trace context of the worker's try (header
    `traceparent`): an OpenTelemetry SDK here would continue that trace; this
    example returns it in the result to show it arrives.
    """
    payload = decode_payload(task)
    if not isinstance(payload, dict) or not isinstance(payload.get("numbers"), list):
        raise Failure('invalid payload: expected {"numbers": [...]}', terminate=True)
    numbers = payload["numbers"]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise Failure("invalid payload: numbers must all be numbers", terminate=True)
    tries = task.get("tries", 0)
    if tries <= int(payload.get("fail_tries", 0)):
        raise Failure(f"failing try {tries} on purpose")
    result = {"sum": sum(numbers), "count": len(numbers), "handled_by": "python", "try": tries}
    if traceparent:
        result["traceparent"] = traceparent
    return json.dumps(result).encode()


def seconds_left(deadline_header):
    if not deadline_header:
        return None
    deadline = datetime.fromisoformat(deadline_header.replace("Z", "+00:00"))
    return (deadline - datetime.now(timezone.utc)).total_seconds()


def one_line(text):
    text = " ".join(str(text).split())
    return text or "handler failed"


async def answer(nc, msg):
    headers = msg.headers or {}
    reply_headers = None
    body = b""
    try:
        if headers.get("AJ-Content-Type", CONTENT_TYPE) != CONTENT_TYPE:
            raise Failure(f"unsupported content type {headers['AJ-Content-Type']!r}")
        try:
            task = json.loads(msg.data)
        except ValueError as e:
            raise Failure(f"invalid task request: {e}")
        left = seconds_left(headers.get("AJ-Handler-Deadline"))
        try:
            body = await asyncio.wait_for(handle(task, headers.get("traceparent")), timeout=left)
        except asyncio.TimeoutError:
            raise Failure("handler did not finish before its deadline")
    except Failure as e:
        name = "AJ-Terminate" if e.terminate else "AJ-Error"
        reply_headers = {name: one_line(e)}
    except Exception as e:  # a bug in the handler must not stop the service
        reply_headers = {"AJ-Error": one_line(f"handler crashed: {e!r}")}
    if msg.reply:
        await nc.publish(msg.reply, body, headers=reply_headers)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--type", default="py:sum", help='task type to serve ("" = catch-all)')
    parser.add_argument("--group", default="asyncjobs", help="NATS queue group")
    args = parser.parse_args()

    nc = await nats.connect(args.url, name="asyncjobs-remote-python")
    running = set()

    async def on_request(msg):
        # one asyncio task per request, so slow tasks do not block others
        t = asyncio.create_task(answer(nc, msg))
        running.add(t)
        t.add_done_callback(running.discard)

    subject = subject_for(args.type)
    sub = await nc.subscribe(subject, queue=args.group, cb=on_request)
    await nc.flush()
    print(f"serving {subject} in queue group {args.group}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # stop taking requests, answer the ones in hand, then close
    await sub.drain()
    if running:
        await asyncio.wait(running)
    await nc.drain()
    print("stopped", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
