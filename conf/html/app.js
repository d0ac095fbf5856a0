/*
 * nginx-webhook-sse demo chat window: one EventSource per tab (or a
 * WebSocket, or long-polling, with ?transport=websocket|longpoll), webhook
 * messages as chat bubbles (plain text and the rich content types of
 * common chat widgets), a form that publishes a test webhook, and how
 * many windows have the session open (the presence location, polled with
 * the form's secret; hidden where the server has none).
 * All message data is rendered with textContent and DOM properties, never
 * as HTML; links and images are followed only for http(s) addresses.
 */

'use strict';

(function () {

    var KEY = 'webhook-sse-demo-session';

    /* ?session=ID joins a session another window has open */
    var asked = new URLSearchParams(location.search).get('session');
    var sessionId = sessionStorage.getItem(KEY);

    if (asked && /^[0-9A-Za-z_-]{1,64}$/.test(asked)) {
        sessionId = asked;
        sessionStorage.setItem(KEY, sessionId);
    }

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
    document.getElementById('share').href =
        '?session=' + encodeURIComponent(sessionId);

    var presence = document.getElementById('presence');
    var presenceTimer = null;
    var PRESENCE_EVERY = 2000;

    var seen = new Set();
    /* ids of the messages this page posted: shown as its own */
    var mine = new Set();
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

    /* connecting, connected, reconnecting, closed */

    function setState(s) {
        state.textContent = s;
        state.setAttribute('data-state', s);
    }

    /*
     * One event of the stream, whatever carried it: the JSON of an SSE
     * "data:" line, a WebSocket text frame, an element of a long-poll
     * answer.  Every message id is rendered once, whatever a replay
     * repeats.
     */

    function handle(data) {
        if (data === null || typeof data !== 'object') {
            return;
        }

        if (data.type === 'connected') {
            setState('connected');
            updatePresence();
            return;
        }

        if (data.type === 'session_opened'
            || data.type === 'session_closed')
        {
            updatePresence();
            return;
        }

        if (data.type !== 'webhook_message') {
            return;
        }

        if (typeof data.messageId === 'string') {
            lastEventId = data.messageId;
        }

        if (seen.has(data.messageId)) {
            return;
        }

        seen.add(data.messageId);

        render(data);
    }

    function streamUrl(extra) {
        var url = '/api/webhook/stream?sessionId='
                  + encodeURIComponent(sessionId) + (extra || '');

        if (lastEventId) {
            url += '&lastEventId=' + encodeURIComponent(lastEventId);
        }

        return url;
    }

    /*
     * SSE.  The browser reconnects by itself when a stream ends or breaks
     * (readyState CONNECTING), waiting the server's "retry" time, and sends
     * Last-Event-ID: the server replays what was published meanwhile.  It
     * gives up for good on a non-200 answer (readyState CLOSED); then we
     * open a new stream and pass the last id we saw in the lastEventId
     * query argument, so nothing retained is missed either.
     */

    function connect() {
        setState('connecting');

        source = new EventSource(streamUrl());

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
            try {
                handle(JSON.parse(e.data));
            } catch (err) {
                return;
            }
        };
    }

    /*
     * WebSocket (?transport=websocket in the page's address): one text
     * frame per event; the browser answers pings itself.  After a close
     * (1012 on a server reload, 1006 when the connection breaks) we open
     * it again with the last message id in lastEventId.
     */

    function connectWebSocket() {
        var ws;

        setState('connecting');

        ws = new WebSocket((location.protocol === 'https:' ? 'wss://'
                                                           : 'ws://')
                           + location.host + streamUrl());
        source = ws;

        ws.onmessage = function (e) {
            try {
                handle(JSON.parse(e.data));
            } catch (err) {
                return;
            }
        };

        ws.onclose = function () {
            setState('reconnecting');
            clearTimeout(retryTimer);
            retryTimer = setTimeout(connectWebSocket, 1000);
        };
    }

    /*
     * Long-polling (?transport=longpoll): each answer is a JSON array of
     * the events after lastEventId, at once or when one arrives ([] after
     * webhook_longpoll_timeout); then the next poll.
     */

    function longPoll() {
        /* a poll waiting is a connected page */
        setState('connected');

        fetch(streamUrl('&transport=longpoll'), {
            headers: { 'Accept': 'application/json' },
            cache: 'no-store'
        }).then(function (res) {
            if (!res.ok) {
                throw new Error(res.status);
            }

            return res.json();
        }).then(function (list) {
            if (Array.isArray(list)) {
                list.forEach(handle);
            }

            longPoll();
        }).catch(function () {
            setState('reconnecting');
            clearTimeout(retryTimer);
            retryTimer = setTimeout(longPoll, 1000);
        });
    }


    /*
     * "seen by N windows": the streams the session has open on the server
     * (all workers), asked of the presence location, which is private like
     * publishing: the form's secret goes with it.  Without the location
     * (404) the line stays hidden for good; a wrong secret hides it until
     * the secret is right.
     */

    function updatePresence() {
        var headers = {};

        clearTimeout(presenceTimer);

        if (form.elements.secret.value) {
            headers['X-Webhook-Secret'] = form.elements.secret.value;
        }

        fetch('/api/webhook/presence?sessionId='
              + encodeURIComponent(sessionId), { headers: headers })
        .then(function (res) {
            if (res.status === 404) {
                presence.hidden = true;
                return null;
            }

            presenceTimer = setTimeout(updatePresence, PRESENCE_EVERY);

            return res.ok ? res.json() : null;
        }).then(function (json) {
            if (json === null || typeof json.streams !== 'number') {
                presence.hidden = true;
                return;
            }

            document.getElementById('windows').textContent = json.streams;
            document.getElementById('windows-word').textContent =
                json.streams === 1 ? 'window' : 'windows';
            presence.dataset.streams = json.streams;
            presence.hidden = false;
        }).catch(function () {
            presence.hidden = true;
            presenceTimer = setTimeout(updatePresence, PRESENCE_EVERY);
        });
    }


    /* ----- rendering ---------------------------------------------------- */

    function el(tag, className, text) {
        var node = document.createElement(tag);

        if (className) {
            node.className = className;
        }

        if (text !== undefined && text !== null) {
            node.textContent = String(text);
        }

        return node;
    }

    function isObject(v) {
        return v !== null && typeof v === 'object' && !Array.isArray(v);
    }

    function str(v) {
        return (typeof v === 'string' || typeof v === 'number') ? String(v)
                                                                : '';
    }

    /* an absolute http(s) address, or null for anything else */

    function safeUrl(u) {
        var url;

        if (typeof u !== 'string' || u === '') {
            return null;
        }

        try {
            url = new URL(u, location.href);
        } catch (err) {
            return null;
        }

        if (url.protocol !== 'http:' && url.protocol !== 'https:') {
            return null;
        }

        return url.href;
    }

    function link(text, href, className) {
        var a;
        var url = safeUrl(href);

        if (url === null) {
            return el('span', className, text);
        }

        a = el('a', className, text);
        a.href = url;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';

        return a;
    }

    /*
     * content_attributes.items, the shape of common chat widgets
     * (Chatwoot): a lone "card" may also carry its fields directly.
     */

    function items(type, attrs) {
        if (!isObject(attrs)) {
            return [];
        }

        if (Array.isArray(attrs.items)) {
            return attrs.items.filter(isObject);
        }

        if (type === 'card') {
            return [attrs];
        }

        return [];
    }

    function renderCards(list) {
        var box = el('div', 'rich rich-cards');

        list.forEach(function (item) {
            var card = el('div', 'card');
            var body = el('div', 'card-body');
            var media = safeUrl(item.media_url);

            if (media) {
                var img = el('img', 'card-media');
                img.src = media;
                img.alt = str(item.title);
                img.loading = 'lazy';
                card.appendChild(img);
            }

            if (str(item.title)) {
                body.appendChild(el('h3', 'card-title', str(item.title)));
            }

            if (str(item.description)) {
                body.appendChild(el('p', 'card-description',
                                    str(item.description)));
            }

            var actions = el('div', 'card-actions');

            (Array.isArray(item.actions) ? item.actions : [])
                .filter(isObject).forEach(function (action) {
                    var text = str(action.text) || str(action.uri)
                               || str(action.payload);

                    if (action.type === 'link') {
                        actions.appendChild(link(text, action.uri,
                                                 'card-action'));
                        return;
                    }

                    actions.appendChild(choice(text, action.payload,
                                               'card-action', actions));
                });

            if (actions.firstChild) {
                body.appendChild(actions);
            }

            card.appendChild(body);
            box.appendChild(card);
        });

        return box;
    }

    function renderArticles(list) {
        var box = el('ul', 'rich rich-article');

        list.forEach(function (item) {
            var li = el('li', 'article');

            li.appendChild(link(str(item.title) || str(item.link),
                                item.link, 'article-title'));

            if (str(item.description)) {
                li.appendChild(el('p', 'article-description',
                                  str(item.description)));
            }

            box.appendChild(li);
        });

        return box;
    }

    /* a postback or quick reply: the demo only marks the choice */

    function choice(text, value, className, group) {
        var b = el('button', className, text);

        b.type = 'button';
        b.setAttribute('aria-pressed', 'false');
        b.dataset.value = str(value);

        b.addEventListener('click', function () {
            Array.prototype.forEach.call(group.querySelectorAll('button'),
                function (other) {
                    other.setAttribute('aria-pressed',
                                       other === b ? 'true' : 'false');
                });
        });

        return b;
    }

    function renderOptions(list) {
        var box = el('div', 'rich rich-input_select');

        list.forEach(function (item) {
            box.appendChild(choice(str(item.title) || str(item.value),
                                   item.value, 'option', box));
        });

        return box;
    }

    /*
     * A form of text, email, text_area and select fields.  The demo has no
     * application to submit it to: it shows the values it would send.
     */

    function renderForm(list, attrs) {
        var f = el('form', 'rich rich-form');
        var submitted = isObject(attrs.submitted_values)
                        ? attrs.submitted_values : null;

        list.forEach(function (item) {
            var field;
            var label = el('label', 'form-field');
            var name = str(item.name);

            label.appendChild(el('span', 'form-label',
                                 str(item.label) || name));

            if (item.type === 'select') {
                field = el('select');

                (Array.isArray(item.options) ? item.options : [])
                    .filter(isObject).forEach(function (o) {
                        var opt = el('option', null,
                                     str(o.label) || str(o.value));
                        opt.value = str(o.value);
                        field.appendChild(opt);
                    });

            } else if (item.type === 'text_area') {
                field = el('textarea');
                field.rows = 3;

            } else {
                field = el('input');
                field.type = (item.type === 'email') ? 'email' : 'text';
            }

            field.name = name;

            if (field.tagName !== 'SELECT') {
                field.placeholder = str(item.placeholder);
            }

            if (str(item.default)) {
                field.value = str(item.default);
            }

            if (submitted && name in submitted) {
                field.value = str(submitted[name]);
            }

            if (item.required === true) {
                field.required = true;
            }

            label.appendChild(field);
            f.appendChild(label);
        });

        var button = el('button', 'form-submit', 'Submit');
        button.type = 'submit';
        f.appendChild(button);

        function done(values) {
            Array.prototype.forEach.call(f.elements, function (field) {
                field.disabled = true;
            });

            var note = el('p', 'form-submitted',
                          'Submitted: ' + JSON.stringify(values));
            f.appendChild(note);
        }

        f.addEventListener('submit', function (e) {
            var values = {};

            e.preventDefault();

            Array.prototype.forEach.call(f.elements, function (field) {
                if (field.name) {
                    values[field.name] = field.value;
                }
            });

            done(values);
        });

        if (submitted) {
            done(submitted);
        }

        return f;
    }

    function renderRich(type, attrs) {
        var list = items(type, attrs);

        if (list.length === 0) {
            return null;
        }

        switch (type) {
        case 'card':
        case 'cards':
            return renderCards(list);
        case 'article':
            return renderArticles(list);
        case 'form':
            return renderForm(list, attrs);
        case 'input_select':
            return renderOptions(list);
        default:
            return null;
        }
    }

    /* the chat pane shows its newest message */

    function scrollToEnd() {
        chat.scrollTop = chat.scrollHeight;
    }

    function markOwn(bubble) {
        bubble.classList.add('own');
        bubble.querySelector('.badge').textContent = 'Sent here';
    }

    function render(data) {
        var bubble = el('div', 'bubble webhook');

        bubble.dataset.messageId = str(data.messageId);

        var head = el('div', 'head');

        head.appendChild(el('span', 'badge', 'Webhook'));

        var when = new Date(data.timestamp);
        var target = (typeof data.sessionId === 'string')
                     ? (data.sessionId === sessionId ? 'this session'
                                                     : data.sessionId)
                     : 'broadcast';

        head.appendChild(el('span', 'details',
                            when.toLocaleTimeString() + ' \u00b7 '
                            + target + ' \u00b7 ' + data.messageId));

        bubble.appendChild(head);

        if (typeof data.message === 'string') {
            bubble.appendChild(el('p', 'text', data.message));
        }

        var rich = null;

        if (typeof data.content_type === 'string') {
            bubble.dataset.contentType = data.content_type;
            rich = renderRich(data.content_type, data.content_attributes);
        }

        if (rich) {
            bubble.appendChild(rich);

        } else if (typeof data.message !== 'string') {
            /* a passthrough payload: show its fields as JSON */
            var rest = Object.assign({}, data);
            delete rest.type;
            delete rest.messageId;
            delete rest.timestamp;

            bubble.appendChild(el('pre', 'payload',
                                  JSON.stringify(rest, null, 2)));
        }

        if (empty) {
            empty.remove();
            empty = null;
        }

        if (mine.has(data.messageId)) {
            markOwn(bubble);
        }

        chat.appendChild(bubble);
        scrollToEnd();

        /* pictures make the bubble taller once they have loaded */
        Array.prototype.forEach.call(bubble.querySelectorAll('img'),
            function (img) {
                img.addEventListener('load', scrollToEnd);
            });
    }


    /* ----- the test webhook form ---------------------------------------- */

    var samples = {
        article: {
            items: [
                { title: 'Server-sent events (WHATWG HTML)',
                  description: 'EventSource, Last-Event-ID and retry.',
                  link: 'https://html.spec.whatwg.org/multipage/'
                        + 'server-sent-events.html' },
                { title: 'nginx: reload without dropping clients',
                  description: 'Old workers end their streams; browsers '
                               + 'resume on the new ones.',
                  link: 'https://nginx.org/en/docs/control.html' }
            ]
        },
        cards: {
            items: [
                { media_url: 'card.svg',
                  title: 'Order #1042 shipped',
                  description: 'Two items, arriving Thursday.',
                  actions: [
                      { type: 'link', text: 'Track parcel',
                        uri: 'https://example.com/track/1042' },
                      { type: 'postback', text: 'Thanks!',
                        payload: 'THANKS' }
                  ] }
            ]
        },
        form: {
            items: [
                { name: 'email', label: 'Email', type: 'email',
                  placeholder: 'you@example.com' },
                { name: 'topic', label: 'Topic', type: 'select',
                  options: [ { label: 'Billing', value: 'billing' },
                             { label: 'Support', value: 'support' } ] },
                { name: 'details', label: 'Details', type: 'text_area',
                  placeholder: 'How can we help?' }
            ]
        },
        input_select: {
            items: [
                { title: 'Yes, resolved', value: 'yes' },
                { title: 'No, still broken', value: 'no' }
            ]
        }
    };

    form.addEventListener('submit', function (e) {
        e.preventDefault();

        var body = { message: form.elements.message.value };
        var content = form.elements.content.value;

        if (content !== 'text' && samples[content]) {
            body.content_type = content;
            body.content_attributes = samples[content];
        }

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
                var json = null;

                try {
                    json = JSON.parse(text);
                    shown = JSON.stringify(json, null, 2);
                } catch (err) {
                    /* not JSON: show it as it came */
                }

                /* the event may have arrived before this answer */
                if (json && typeof json.messageId === 'string') {
                    mine.add(json.messageId);

                    Array.prototype.forEach.call(
                        chat.querySelectorAll('.bubble'), function (b) {
                            if (b.dataset.messageId === json.messageId) {
                                markOwn(b);
                            }
                        });
                }

                answer.textContent = res.status + ' ' + res.statusText
                                     + '\n' + shown;
            });
        }).catch(function (err) {
            answer.textContent = 'request failed: ' + err.message;
        });
    });

    /* SSE unless the page's address asks for another transport */

    switch (new URLSearchParams(location.search).get('transport')) {
    case 'websocket':
        connectWebSocket();
        break;
    case 'longpoll':
        longPoll();
        break;
    default:
        connect();
    }

})();
