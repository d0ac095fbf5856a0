/*
 * nginx-webhook-sse demo chat window: one EventSource per tab, webhook
 * messages as chat bubbles, and a form that publishes a test webhook.
 * All message data is rendered with textContent, never as HTML.
 */

'use strict';

(function () {

    var KEY = 'webhook-sse-demo-session';

    var sessionId = sessionStorage.getItem(KEY);

    if (!sessionId) {
        sessionId = newSessionId();
        sessionStorage.setItem(KEY, sessionId);
    }

    var chat = document.getElementById('chat');
    var empty = document.getElementById('empty');
    var state = document.getElementById('state');
    var answer = document.getElementById('answer');
    var form = document.getElementById('publish');

    document.getElementById('session').textContent = sessionId;

    var seen = new Set();
    var lastEventId = '';
    var source = null;
    var retryTimer = null;

    function newSessionId() {
        if (window.crypto && crypto.randomUUID) {
            return crypto.randomUUID();
        }

        var bytes = new Uint8Array(16);
        crypto.getRandomValues(bytes);

        return Array.prototype.map.call(bytes, function (b) {
            return ('0' + b.toString(16)).slice(-2);
        }).join('');
    }

    function setState(s) {
        state.textContent = s;
        state.setAttribute('data-state', s);
    }

    /*
     * The browser reconnects by itself after network errors and sends
     * Last-Event-ID.  It gives up for good on a non-200 answer (readyState
     * CLOSED); then we open a new stream and pass the last id we saw in the
     * lastEventId query argument, so nothing retained is missed.
     */

    function connect() {
        var url = '/api/webhook/stream?sessionId='
                  + encodeURIComponent(sessionId);

        if (lastEventId) {
            url += '&lastEventId=' + encodeURIComponent(lastEventId);
        }

        setState('connecting');

        source = new EventSource(url);

        source.onopen = function () {
            setState('open');
        };

        source.onerror = function () {
            if (source.readyState === EventSource.CLOSED) {
                setState('closed');
                source.close();
                clearTimeout(retryTimer);
                retryTimer = setTimeout(connect, 5000);
                return;
            }

            setState('reconnecting');
        };

        source.onmessage = function (e) {
            var data;

            try {
                data = JSON.parse(e.data);
            } catch (err) {
                return;
            }

            if (e.lastEventId) {
                lastEventId = e.lastEventId;
            }

            if (data === null || data.type !== 'webhook_message') {
                /* "connected" and anything unknown */
                return;
            }

            if (seen.has(data.messageId)) {
                return;
            }

            seen.add(data.messageId);

            render(data);
        };
    }

    function render(data) {
        var bubble = document.createElement('div');
        bubble.className = 'bubble';

        var head = document.createElement('div');

        var badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = 'Webhook';
        head.appendChild(badge);

        var details = document.createElement('span');
        details.className = 'details';

        var when = new Date(data.timestamp);
        var target = (data.sessionId === sessionId) ? 'this session'
                                                    : 'broadcast';
        details.textContent = when.toLocaleTimeString() + ' \u00b7 '
                              + target + ' \u00b7 ' + data.messageId;
        head.appendChild(details);

        bubble.appendChild(head);

        if (typeof data.message === 'string') {
            var text = document.createElement('p');
            text.className = 'text';
            text.textContent = data.message;
            bubble.appendChild(text);

        } else {
            /* a passthrough payload: show its fields as JSON */
            var rest = Object.assign({}, data);
            delete rest.type;
            delete rest.messageId;
            delete rest.timestamp;

            var pre = document.createElement('pre');
            pre.textContent = JSON.stringify(rest, null, 2);
            bubble.appendChild(pre);
        }

        if (empty) {
            empty.remove();
            empty = null;
        }

        chat.appendChild(bubble);
        chat.scrollTop = chat.scrollHeight;
    }

    form.addEventListener('submit', function (e) {
        e.preventDefault();

        var body = { message: form.elements.message.value };

        if (form.elements.target.value === 'session') {
            body.sessionId = sessionId;
        }

        var headers = { 'Content-Type': 'application/json' };

        if (form.elements.secret.value) {
            headers['X-Webhook-Secret'] = form.elements.secret.value;
        }

        answer.hidden = false;
        answer.textContent = 'sending...';

        fetch('/api/webhook', {
            method: 'POST',
            headers: headers,
            body: JSON.stringify(body)
        }).then(function (res) {
            return res.text().then(function (text) {
                var shown = text;

                try {
                    shown = JSON.stringify(JSON.parse(text), null, 2);
                } catch (err) {
                    /* not JSON: show it as it came */
                }

                answer.textContent = res.status + ' ' + res.statusText
                                     + '\n' + shown;
            });
        }).catch(function (err) {
            answer.textContent = 'request failed: ' + err.message;
        });
    });

    connect();

})();
