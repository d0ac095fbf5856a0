// A receiver of outbound deliveries as users write them with Express,
// checking Standard Webhooks signatures with the npm standardwebhooks
// package (an implementation independent of the module's).
//
//   node receiver.js --port-file F --log F [--secret whsec_..]
//                    [--plan 503,503,200] [--delay-ms N]
//
// Binds a free loopback port and writes it to --port-file.  Every request
// becomes one JSON line in --log: arrival time, path, webhook-* headers,
// whether the signature verified, the parsed body, the answer, and how
// many requests were in progress at arrival (this one included).
// --plan: the answers to the 1st, 2nd, .. request of one webhook-id (the
// last one repeats): a status, "429:S" (with Retry-After: S) or "hang"
// (no answer).  --delay-ms: wait before answering.  At start a line
// {"vector": true|false} tells whether the library verifies the Standard
// Webhooks published test vector.

'use strict';

const fs = require('fs');
const express = require('express');
const { Webhook } = require('standardwebhooks');

const opt = { plan: '200', delayMs: 0 };

for (let i = 2; i < process.argv.length; i += 2) {
    const key = process.argv[i].replace(/^--/, '')
        .replace(/-([a-z])/g, (m, c) => c.toUpperCase());
    opt[key] = process.argv[i + 1];
}

const plan = opt.plan.split(',');
const delayMs = Number(opt.delayMs);
const log = fs.openSync(opt.log, 'a');
const seen = new Map();
let inflight = 0;

function record(obj) {
    fs.writeSync(log, JSON.stringify(obj) + '\n');
}

// the published test vector of the Standard Webhooks specification
(function vector() {
    const wh = new Webhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
    const headers = {
        'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
        'webhook-timestamp': '1614265330',
        'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    };
    let ok = false;
    const now = Date.now;
    Date.now = () => 1614265330 * 1000;
    try {
        wh.verify('{"test": 2432232314}', headers);
        ok = true;
    } catch (e) {
        ok = false;
    }
    Date.now = now;
    record({ vector: ok });
})();

const wh = opt.secret ? new Webhook(opt.secret) : null;
const app = express();

app.use(express.raw({ type: '*/*', limit: '10mb' }));

app.post('*', (req, res) => {
    inflight++;

    const id = req.get('webhook-id') || '';
    const n = (seen.get(id) || 0) + 1;
    seen.set(id, n);

    const body = req.body.toString('utf8');
    let verified = null;

    if (wh) {
        try {
            wh.verify(body, {
                'webhook-id': id,
                'webhook-timestamp': req.get('webhook-timestamp') || '',
                'webhook-signature': req.get('webhook-signature') || '',
            });
            verified = true;
        } catch (e) {
            verified = false;
        }
    }

    let parsed = null;
    try {
        parsed = JSON.parse(body);
    } catch (e) {
        parsed = null;
    }

    const answer = plan[Math.min(n, plan.length) - 1];
    const entry = {
        t: Date.now() / 1000, path: req.path, id, attempt: n,
        timestamp: req.get('webhook-timestamp') || null,
        signature: req.get('webhook-signature') || null,
        contentType: req.get('content-type') || null,
        verified, body: parsed, raw: body, answer, inflight,
    };

    record(entry);

    if (answer === 'hang') {
        // never answered; the client gives up (webhook_forward_timeout)
        req.socket.on('close', () => { inflight--; });
        return;
    }

    setTimeout(() => {
        const [status, retryAfter] = answer.split(':');
        if (retryAfter) {
            res.set('Retry-After', retryAfter);
        }
        res.status(Number(status)).end();
        inflight--;
    }, delayMs);
});

const server = app.listen(0, '127.0.0.1', () => {
    fs.writeFileSync(opt.portFile + '.tmp', String(server.address().port));
    fs.renameSync(opt.portFile + '.tmp', opt.portFile);
});

server.keepAliveTimeout = 60000;

process.on('SIGTERM', () => process.exit(0));
