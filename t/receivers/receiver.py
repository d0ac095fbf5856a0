#!/usr/bin/python3
"""A receiver of outbound deliveries as users write them with Flask,
checking Standard Webhooks signatures with Python's own hmac (an
implementation independent of the module's).

    receiver.py --port-file F --log F [--secret whsec_..]
                [--plan 503,503,200] [--delay-ms N]

Same options and log lines as receiver.js (see there).
"""

import argparse
import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time

from flask import Flask, request
from werkzeug.serving import make_server

parser = argparse.ArgumentParser()
parser.add_argument('--port-file', required=True)
parser.add_argument('--log', required=True)
parser.add_argument('--secret')
parser.add_argument('--plan', default='200')
parser.add_argument('--delay-ms', type=int, default=0)
opt = parser.parse_args()

plan = opt.plan.split(',')
lock = threading.Lock()
seen = {}
state = {'inflight': 0}
log = open(opt.log, 'a', buffering=1)

logging.getLogger('werkzeug').setLevel(logging.ERROR)


def key_of(secret):
    if secret.startswith('whsec_'):
        return base64.b64decode(secret[len('whsec_'):])
    return secret.encode()


def verify(key, msg_id, timestamp, body, signatures):
    signed = msg_id.encode() + b'.' + timestamp.encode() + b'.' + body
    expected = base64.b64encode(
        hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for sig in signatures.split(' '):
        version, _, value = sig.partition(',')
        if version == 'v1' and hmac.compare_digest(value, expected):
            return True
    return False


app = Flask(__name__)


@app.post('/<path:path>')
def receive(path):
    with lock:
        state['inflight'] += 1
        inflight = state['inflight']
        msg_id = request.headers.get('webhook-id', '')
        n = seen.get(msg_id, 0) + 1
        seen[msg_id] = n

    body = request.get_data()
    verified = None
    if opt.secret:
        verified = verify(key_of(opt.secret), msg_id,
                          request.headers.get('webhook-timestamp', ''), body,
                          request.headers.get('webhook-signature', ''))
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None

    answer = plan[min(n, len(plan)) - 1]
    entry = {
        't': time.time(), 'path': '/' + path, 'id': msg_id, 'attempt': n,
        'timestamp': request.headers.get('webhook-timestamp'),
        'signature': request.headers.get('webhook-signature'),
        'contentType': request.headers.get('content-type'),
        'verified': verified, 'body': parsed,
        'raw': body.decode('utf-8', 'replace'), 'answer': answer,
        'inflight': inflight,
    }
    with lock:
        log.write(json.dumps(entry) + '\n')

    try:
        if answer == 'hang':
            time.sleep(120)
        if opt.delay_ms:
            time.sleep(opt.delay_ms / 1000)
        status, _, retry_after = answer.partition(':')
        headers = {'Retry-After': retry_after} if retry_after else {}
        return '', int(status), headers
    finally:
        with lock:
            state['inflight'] -= 1


server = make_server('127.0.0.1', 0, app, threaded=True)
with open(opt.port_file + '.tmp', 'w') as f:
    f.write(str(server.server_port))
os.rename(opt.port_file + '.tmp', opt.port_file)
server.serve_forever()
