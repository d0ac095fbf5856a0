// A WebSocket subscriber for the Perl tests (t/websocket.t), the npm ws
// client: one line on stdout per thing that happens, commands on stdin.
//
//   node ws-client.js URL [--resume] [--no-pong] [--max-reconnects N]
//                         [--origin ORIGIN]
//
// Out: OPEN, MSG <json>, PING, CLOSE <code> <reason>,
//      HTTP <status> <body>, ERROR <text>, GONE (no more reconnects).
// In:  close (a normal close, 1000), pause / resume (stop and go on
//      reading the socket), send <text>, terminate (drop the TCP
//      connection), exit.
// --resume: after a close it did not ask for, the client connects again
// with ?lastEventId=<the last messageId it got>, as an application does.

'use strict';

const WebSocket = require('ws');
const readline = require('readline');

const args = process.argv.slice(2);
const base = args[0];
const resume = args.includes('--resume');
const noPong = args.includes('--no-pong');
const maxIdx = args.indexOf('--max-reconnects');
const maxReconnects = maxIdx >= 0 ? Number(args[maxIdx + 1]) : 20;
const originIdx = args.indexOf('--origin');
const origin = originIdx >= 0 ? args[originIdx + 1] : undefined;

let ws = null;
let lastId = null;
let wanted = false;
let reconnects = 0;

function out(line) {
    process.stdout.write(line + '\n');
}

function again() {
    if (resume && !wanted && reconnects < maxReconnects) {
        reconnects++;
        setTimeout(connect, 100);
        return;
    }

    out('GONE');
}

function connect() {
    let url = base;

    if (lastId) {
        url += (url.includes('?') ? '&' : '?') + 'lastEventId='
               + encodeURIComponent(lastId);
    }

    ws = new WebSocket(url, { autoPong: !noPong, handshakeTimeout: 10000,
                              origin: origin });

    ws.on('open', () => out('OPEN'));

    ws.on('message', (data, isBinary) => {
        const text = data.toString();

        if (isBinary) {
            out('BINARY ' + text);
            return;
        }

        try {
            const o = JSON.parse(text);
            if (o.messageId) {
                lastId = o.messageId;
            }
        } catch (e) {
            out('BAD ' + text);
            return;
        }

        out('MSG ' + text);
    });

    ws.on('ping', () => out('PING'));

    ws.on('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
            out('HTTP ' + res.statusCode + ' ' + body.replace(/\n/g, ' '));
            req.destroy();
            if (res.statusCode === 503) {
                again();
            } else {
                out('GONE');
            }
        });
    });

    ws.on('error', (e) => out('ERROR ' + e.message));

    ws.on('close', (code, reason) => {
        out('CLOSE ' + code + ' ' + reason.toString());
        again();
    });
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const [cmd, ...rest] = line.split(' ');

    switch (cmd) {
    case 'close':
        wanted = true;
        ws.close(1000, 'bye');
        break;
    case 'pause':
        ws.pause();
        break;
    case 'resume':
        ws.resume();
        break;
    case 'send':
        ws.send(rest.join(' '));
        break;
    case 'terminate':
        wanted = true;
        ws.terminate();
        break;
    case 'exit':
        process.exit(0);
    }
}).on('close', () => process.exit(0));

connect();
