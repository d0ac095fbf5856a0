'use strict';

/*
 * The demo chat page (conf/html/, served by conf/nginx.conf) in headless
 * Debian Chromium, driven by playwright-core, against a private nginx
 * with the module: it connects, renders webhook and rich messages, keeps
 * sessions apart, and resumes after the server drops its stream (reload,
 * kill -9) with every message exactly once, over SSE, WebSocket and
 * long-polling, and shows how many windows have its session open
 * (presence), while a backend gets one signed join and one leave per
 * session (webhook_presence_forward).  Screenshots, light and dark,
 * go to build/browser/ (BROWSER_SHOTS_DIR).
 *
 * Run: make test-browser (or: cd t/browser && npm ci && npm test).
 */

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');
const { test, before, after } = require('node:test');

const { chromium } = require('playwright-core');

const { startNginx, REPO } = require('./nginx.js');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SECRET = 'change-me';             /* conf/nginx.conf's demo secret */
const SHOTS = process.env.BROWSER_SHOTS_DIR
              || path.join(REPO, 'build', 'browser');
const WAIT = 10000;                     /* ms, any single awaited event */

let server = null;
let browser = null;
let failed = false;

/*
 * The backend of webhook_presence_forward: every POST, its Standard
 * Webhooks signature checked here with node:crypto (the Perl tests check
 * them with the npm standardwebhooks package and Python's hmac).
 */
const PRESENCE_SECRET = 'whsec_' + crypto.randomBytes(24).toString('base64');
const posts = [];
let backend = null;

function verify(id, ts, body, signature) {
    const key = Buffer.from(PRESENCE_SECRET.slice(6), 'base64');
    const mac = crypto.createHmac('sha256', key)
                      .update(`${id}.${ts}.${body}`).digest('base64');
    return (signature || '').split(' ').includes(`v1,${mac}`);
}

function startBackend() {
    backend = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            const id = req.headers['webhook-id'];
            posts.push({
                t: Date.now(), path: req.url, id,
                verified: verify(id, req.headers['webhook-timestamp'], body,
                                 req.headers['webhook-signature']),
                body: JSON.parse(body),
            });
            res.end();
        });
    });

    return new Promise((resolve) => {
        backend.listen(0, '127.0.0.1', () => resolve(backend.address().port));
    });
}

/*
 * The events the backend got for a session, of a type, each once: an
 * attempt of a killed worker may have reached the backend and is made
 * again under the same webhook-id (delivery is at least once).
 */
function presencePosts(session, type) {
    const seen = new Set();
    return posts.filter((p) => p.body.sessionId === session
                               && (!type || p.body.type === type)
                               && !seen.has(p.id) && seen.add(p.id));
}

async function waitPosts(session, type, n, ms) {
    const end = Date.now() + ms;
    while (presencePosts(session, type).length < n) {
        if (Date.now() > end) {
            throw new Error(`the backend did not get ${n} ${type} of `
                            + `${session} within ${ms} ms`);
        }
        await new Promise((r) => setTimeout(r, 50));
    }
}


before(async () => {
    const port = await startBackend();

    /*
     * One attempt at a time: the backend gets the events in queue order.
     * An attempt of a killed worker holds the endpoint until its lease
     * ends (the timeout and 2 s).
     */
    server = await startNginx({ http: `
    webhook_presence_forward chat http://127.0.0.1:${port}/presence
                             secret=${PRESENCE_SECRET};
    webhook_forward_rate off;
    webhook_forward_concurrency 1;
    webhook_forward_timeout 3s;` });

    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless=new', '--no-sandbox', '--disable-gpu',
               '--disable-dev-shm-usage', '--disable-background-networking',
               '--disable-component-update', '--disable-sync',
               '--no-first-run'],
        timeout: 30000,
    });
});


after(async () => {
    if (browser) {
        await browser.close();
    }

    if (backend) {
        backend.close();
        backend.closeAllConnections();
    }

    if (server) {
        await server.stop();

        if (failed) {
            console.error(`nginx kept in ${server.dir}\n${server.logTail()}`);
        } else {
            fs.rmSync(server.dir, { recursive: true, force: true });
        }
    }
});


/* a test that marks the run failed, so after() keeps the server's files */

function step(name, fn) {
    test(name, async (t) => {
        try {
            await fn(t);
        } catch (e) {
            failed = true;
            throw e;
        }
    });
}


function tag() {
    return crypto.randomUUID().slice(0, 8);
}


/*
 * Right after a reload fetch may pick a kept-alive connection the old
 * worker is closing ("fetch failed", the request never read): it is sent
 * again, under the same Idempotency-Key, so a message that did arrive
 * is not published twice.
 */

async function publish(body) {
    const key = crypto.randomUUID();
    let res;

    for (let attempt = 1; ; attempt++) {
        try {
            res = await fetch(server.url('/api/webhook'), {
                method: 'POST',
                headers: { 'Content-Type': 'application/json',
                           'X-Webhook-Secret': SECRET,
                           'Idempotency-Key': key },
                body: JSON.stringify(body),
                signal: AbortSignal.timeout(WAIT),
            });
            break;
        } catch (e) {
            if (attempt === 3 || e.name !== 'TypeError') {
                throw e;
            }
        }
    }

    const json = await res.json();

    assert.equal(res.status, 200, `publish: ${JSON.stringify(json)}`);
    assert.ok(json.messageId, 'publish: a messageId');

    return json.messageId;
}


/*
 * A new browser context (its own sessionStorage) with the page open and
 * connected.  Every event its EventSources receive is recorded in
 * window.__raw, beside the page's own handling, so a test can tell what
 * the server sent from what the page shows (the page drops repeats).
 */

async function openPage(opt = {}) {
    const context = await browser.newContext({
        viewport: opt.viewport || { width: 900, height: 900 },
        colorScheme: opt.colorScheme || 'light',
    });

    await context.addInitScript(() => {
        const Native = window.EventSource;
        const NativeWebSocket = window.WebSocket;
        const nativeFetch = window.fetch;

        window.__raw = [];
        window.__closes = [];
        window.EventSource = class extends Native {
            constructor(...args) {
                super(...args);
                this.addEventListener('message', (e) => {
                    window.__raw.push({ id: e.lastEventId, data: e.data });
                });
            }
        };

        /* WebSocket frames and long-poll answers carry the id inside */

        window.WebSocket = class extends NativeWebSocket {
            constructor(...args) {
                super(...args);
                this.addEventListener('message', (e) => {
                    const d = JSON.parse(e.data);
                    window.__raw.push({ id: d.messageId || '', data: e.data });
                });
                this.addEventListener('close', (e) => {
                    window.__closes.push(e.code);
                });
            }
        };

        window.fetch = async (...args) => {
            const res = await nativeFetch(...args);
            if (String(args[0]).includes('transport=longpoll') && res.ok) {
                for (const d of await res.clone().json()) {
                    window.__raw.push({ id: d.messageId,
                                        data: JSON.stringify(d) });
                }
            }
            return res;
        };
    });

    const page = await context.newPage();
    const errors = [];

    page.on('pageerror', (e) => errors.push(String(e)));
    page.errors = errors;

    await page.goto(server.url(opt.path || '/' + (opt.query || '')),
                    { timeout: WAIT });
    await page.locator('#state[data-state="connected"]')
              .waitFor({ timeout: WAIT });

    page.sessionId = await page.locator('#session').textContent();

    return page;
}


function bubble(page, text) {
    return page.locator('#chat .bubble', { hasText: text });
}


/* how often each message id was received as an event on any stream */

async function rawCounts(page) {
    const raw = await page.evaluate(() => window.__raw);
    const counts = {};

    for (const e of raw) {
        const d = JSON.parse(e.data);
        if (d.type === 'webhook_message') {
            counts[d.messageId] = (counts[d.messageId] || 0) + 1;
            assert.equal(e.id, d.messageId, 'the id: line is the messageId');
        }
    }

    return counts;
}


/* records the page's connection states from now on, in window.__states */

async function watchStates(page) {
    await page.evaluate(() => {
        const state = document.getElementById('state');
        window.__states = [];
        new MutationObserver(() => {
            window.__states.push(state.dataset.state);
        }).observe(state, { attributes: true,
                            attributeFilter: ['data-state'] });
    });
}


/* "rgb(r, g, b)" -> hue in degrees and saturation 0..1 (HSL) */

function hueOf(css) {
    const [r, g, b] = css.match(/\d+(\.\d+)?/g).slice(0, 3)
                         .map((v) => Number(v) / 255);
    const max = Math.max(r, g, b);
    const min = Math.min(r, g, b);
    const d = max - min;
    let h = 0;

    if (d === 0) {
        return { hue: 0, sat: 0, light: max };
    }
    if (max === r) {
        h = ((g - b) / d) % 6;
    } else if (max === g) {
        h = (b - r) / d + 2;
    } else {
        h = (r - g) / d + 4;
    }
    h = (h * 60 + 360) % 360;

    const l = (max + min) / 2;
    return { hue: h, sat: d / (1 - Math.abs(2 * l - 1)), light: l };
}


async function assertWebhookStyle(page, loc, mode) {
    const look = await loc.evaluate((b) => {
        const chat = document.getElementById('chat').getBoundingClientRect();
        const box = b.getBoundingClientRect();
        const cs = getComputedStyle(b);
        return { bg: cs.backgroundColor, fg: cs.color,
                 left: box.left - chat.left, right: chat.right - box.right,
                 align: cs.textAlign,
                 badge: b.querySelector('.badge')?.textContent };
    });

    const bg = hueOf(look.bg);

    assert.equal(look.badge, 'Webhook', `${mode}: a "Webhook" badge`);
    assert.ok(bg.hue >= 250 && bg.hue <= 300 && bg.sat > 0.3,
              `${mode}: purple background, got ${look.bg}`);
    assert.ok(look.left < 30 && look.right > look.left,
              `${mode}: bubble on the left (left ${look.left},`
              + ` right ${look.right})`);
    assert.equal(look.align, 'left', `${mode}: text left-aligned`);

    const fg = hueOf(look.fg);
    assert.ok(Math.abs(fg.light - bg.light) > 0.5,
              `${mode}: text readable on the bubble (${look.fg} on`
              + ` ${look.bg})`);

    return look;
}


// ----- tests -----------------------------------------------------------------

step('the page connects: its sessionId shown, kept in sessionStorage, '
     + 'state connected', async () => {
    const page = await openPage();
    const id = page.sessionId;

    assert.match(id, /^[0-9a-f-]{16,}$/, 'a random sessionId on the page');
    assert.equal(await page.evaluate(
                     () => sessionStorage.getItem('webhook-sse-demo-session')),
                 id, 'the sessionId is kept in sessionStorage');
    assert.equal(await page.locator('#state').textContent(), 'connected');

    const raw = await page.evaluate(() => window.__raw);
    assert.deepEqual(JSON.parse(raw[0].data),
                     { type: 'connected', sessionId: id },
                     'the stream opened for this sessionId');

    /* reloading the tab keeps the session */
    await page.reload({ timeout: WAIT });
    await page.locator('#state[data-state="connected"]')
              .waitFor({ timeout: WAIT });
    assert.equal(await page.locator('#session').textContent(), id,
                 'the same sessionId after reloading the tab');

    assert.deepEqual(page.errors, [], 'no script errors');
    await page.context().close();
});


step('own messages stand apart; the pane shows the newest; no favicon '
     + 'request', async () => {
    const requests = [];
    const page = await openPage();

    page.on('request', (r) => requests.push(new URL(r.url()).pathname));
    await page.reload({ timeout: WAIT });
    await page.locator('#state[data-state="connected"]')
              .waitFor({ timeout: WAIT });

    assert.ok(!requests.includes('/favicon.ico'),
              'the page names its icon inline: no /favicon.ico request');
    assert.ok(!fs.readFileSync(server.errorLog, 'utf8')
                 .includes('favicon.ico'),
              'no favicon.ico line in the error log');

    /* one from the page's form, one from elsewhere (a service) */
    const mineText = `from this page ${tag()}`;
    await page.locator('#message').fill(mineText, { timeout: WAIT });
    await page.locator('#publish button[type="submit"]')
              .click({ timeout: WAIT });
    await bubble(page, mineText).waitFor({ timeout: WAIT });
    await page.waitForFunction(() => /^200 /.test(
        document.getElementById('answer').textContent), null,
        { timeout: WAIT });

    const otherText = `from a service ${tag()}`;
    await publish({ message: otherText, sessionId: page.sessionId });
    await bubble(page, otherText).waitFor({ timeout: WAIT });

    const look = (text) => bubble(page, text).evaluate((b) => {
        const cs = getComputedStyle(b);
        return { own: b.classList.contains('own'), align: cs.alignSelf,
                 bg: cs.backgroundColor,
                 badge: b.querySelector('.badge').textContent };
    });
    const mine = await look(mineText);
    const other = await look(otherText);

    assert.equal(mine.own, true, 'the form\'s message is marked own');
    assert.equal(other.own, false, 'a service\'s message is not');
    assert.equal(mine.align, 'flex-end', 'own messages on the right');
    assert.notEqual(other.align, 'flex-end', 'others on the left');
    assert.notEqual(mine.bg, other.bg, 'own and other differ in colour');
    assert.notEqual(mine.badge, other.badge, 'and in their badge');

    /* many messages: the pane is scrolled to the newest, also after a
       card's picture has loaded */
    for (let i = 0; i < 25; i++) {
        await publish({ message: `filler ${i}`, sessionId: page.sessionId });
    }
    const last = `with a picture ${tag()}`;
    await publish({ message: last, sessionId: page.sessionId,
                    content_type: 'cards',
                    content_attributes: { items: [
                        { media_url: 'card.svg', title: 'Card' } ] } });
    await bubble(page, last).waitFor({ timeout: WAIT });
    await page.waitForFunction(() => Array.from(document.images)
        .every((i) => i.complete && i.naturalWidth > 0), null,
        { timeout: WAIT });
    await page.waitForFunction(() => {
        const c = document.getElementById('chat');
        return c.scrollHeight > c.clientHeight
               && c.scrollTop + c.clientHeight >= c.scrollHeight - 2;
    }, null, { timeout: WAIT });

    assert.deepEqual(page.errors, [], 'no script errors');
    await page.context().close();
});


step('the page\'s form posts test webhooks; screenshots light and dark',
     async () => {
    const page = await openPage({ viewport: { width: 960, height: 1200 } });
    const answer = page.locator('#answer');

    async function send(message, content, target = 'session') {
        await page.locator('#message').fill(message, { timeout: WAIT });
        await page.locator('#content').selectOption(content,
                                                    { timeout: WAIT });
        await page.locator(`input[name="target"][value="${target}"]`)
                  .check({ timeout: WAIT });
        await page.locator('#publish button[type="submit"]')
                  .click({ timeout: WAIT });
        await bubble(page, message).waitFor({ timeout: WAIT });
        await page.waitForFunction(() => /^200 /.test(
            document.getElementById('answer').textContent), null,
            { timeout: WAIT });
    }

    await send('Your order has shipped.', 'text');
    assert.match(await answer.textContent(), /"success": true/,
                 'the answer of the POST is shown');
    await send('Anyone there? (broadcast)', 'text', 'broadcast');
    await send('Here is your parcel:', 'cards');
    await send('These may help:', 'article');
    await send('Was this resolved?', 'input_select');

    assert.match(await bubble(page, 'Here is your parcel:')
                           .getAttribute('data-content-type'), /^cards$/);

    /* a wrong secret is refused, and the page says so */
    await page.locator('#secret').fill('wrong', { timeout: WAIT });
    await page.locator('#publish button[type="submit"]')
              .click({ timeout: WAIT });
    await page.waitForFunction(() => /^401 /.test(
        document.getElementById('answer').textContent), null,
        { timeout: WAIT });
    await page.locator('#secret').fill(SECRET, { timeout: WAIT });

    await page.locator('#message').fill('Hello from a webhook');
    await page.locator('#content').selectOption('text');
    await page.locator('#answer').evaluate((el) => { el.hidden = true; });

    /* every image loaded before the pictures are taken */
    await page.waitForFunction(() => Array.from(document.images)
        .every((i) => i.complete && i.naturalWidth > 0), null,
        { timeout: WAIT });

    await page.evaluate(() => document.activeElement.blur());

    fs.mkdirSync(SHOTS, { recursive: true });

    const bg = {};

    for (const mode of ['light', 'dark']) {
        await page.emulateMedia({ colorScheme: mode });
        bg[mode] = await page.evaluate(
            () => getComputedStyle(document.body).backgroundColor);
        await page.screenshot({ path: path.join(SHOTS, `demo-${mode}.png`),
                                fullPage: true });
        assert.ok(fs.statSync(path.join(SHOTS, `demo-${mode}.png`)).size
                  > 10000, `demo-${mode}.png written`);
    }

    assert.ok(hueOf(bg.light).light > 0.8 && hueOf(bg.dark).light < 0.2,
              `light and dark pages (${bg.light}, ${bg.dark})`);

    assert.deepEqual(page.errors, [], 'no script errors');
    await page.context().close();
});


step('a webhook POST appears as a webhook message (light and dark)',
     async () => {
    const page = await openPage();
    const t = tag();
    const text = `Hello ${t} <b>not bold</b> & "quoted"`;

    const id = await publish({ message: text, sessionId: page.sessionId });
    const b = bubble(page, t);

    await b.waitFor({ timeout: WAIT });

    assert.equal(await b.locator('.text').textContent(), text,
                 'the message as text, markup shown, not interpreted');
    assert.equal(await b.locator('b').count(), 0, 'no HTML from the message');
    assert.equal(await b.getAttribute('data-message-id'), id);
    assert.match(await b.locator('.details').textContent(), /this session/);
    assert.equal(await page.locator('#empty').count(), 0,
                 'the "no messages" note is gone');

    const light = await assertWebhookStyle(page, b, 'light');

    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await assertWebhookStyle(page, b, 'dark');

    assert.notEqual(dark.bg, light.bg, 'dark mode has its own bubble colour');

    /* a broadcast reaches the page too, marked as such */
    const t2 = tag();
    await publish({ message: `to everyone ${t2}` });
    await bubble(page, t2).waitFor({ timeout: WAIT });
    assert.match(await bubble(page, t2).locator('.details').textContent(),
                 /broadcast/);

    assert.deepEqual(page.errors, [], 'no script errors');
    await page.context().close();
});


step('rich messages render: cards, article, form, input_select',
     async () => {
    const page = await openPage();
    const s = page.sessionId;
    const t = tag();

    await publish({
        message: `card ${t}`, sessionId: s, content_type: 'cards',
        content_attributes: { items: [{
            media_url: '/card.svg',
            title: `Order ${t} shipped`,
            description: 'Arriving Thursday',
            actions: [
                { type: 'link', text: 'Track', uri: 'https://example.com/t' },
                { type: 'link', text: 'Evil', uri: 'javascript:alert(1)' },
                { type: 'postback', text: 'Thanks!', payload: 'THANKS' },
            ],
        }] },
    });

    await publish({
        message: `article ${t}`, sessionId: s, content_type: 'article',
        content_attributes: { items: [
            { title: 'First article', description: 'About SSE',
              link: 'https://example.com/a1' },
            { title: 'Second article', link: 'https://example.com/a2' },
        ] },
    });

    await publish({
        message: `form ${t}`, sessionId: s, content_type: 'form',
        content_attributes: { items: [
            { name: 'email', label: 'Email', type: 'email',
              placeholder: 'you@example.com' },
            { name: 'topic', label: 'Topic', type: 'select',
              options: [{ label: 'Billing', value: 'billing' },
                        { label: 'Support', value: 'support' }] },
            { name: 'details', label: 'Details', type: 'text_area' },
        ] },
    });

    await publish({
        message: `choose ${t}`, sessionId: s, content_type: 'input_select',
        content_attributes: { items: [{ title: 'Yes', value: 'yes' },
                                      { title: 'No', value: 'no' }] },
    });

    /* items of the wrong shape are skipped, the message still shows */
    await publish({
        message: `odd ${t}`, sessionId: s, content_type: 'card',
        content_attributes: { items: [1, 'two', { title: `lone ${t}` }] },
    });

    /* cards */
    const card = bubble(page, `card ${t}`);
    await card.waitFor({ timeout: WAIT });
    await assertWebhookStyle(page, card, 'card');
    assert.equal(await card.locator('.card-title').textContent(),
                 `Order ${t} shipped`);
    assert.equal(await card.locator('.card-description').textContent(),
                 'Arriving Thursday');

    const img = card.locator('img.card-media');
    await page.waitForFunction((el) => el.complete && el.naturalWidth > 0,
                               await img.elementHandle(), { timeout: WAIT });

    assert.equal(await card.locator('a.card-action', { hasText: 'Track' })
                           .getAttribute('href'), 'https://example.com/t');
    assert.equal(await card.locator('a', { hasText: 'Evil' }).count(), 0,
                 'a javascript: link is not made a link');
    const thanks = card.locator('button.card-action', { hasText: 'Thanks!' });
    await thanks.click({ timeout: WAIT });
    assert.equal(await thanks.getAttribute('aria-pressed'), 'true',
                 'a postback button can be chosen');

    /* article */
    const art = bubble(page, `article ${t}`);
    await art.waitFor({ timeout: WAIT });
    const links = art.locator('.rich-article a.article-title');
    assert.deepEqual(await links.allTextContents(),
                     ['First article', 'Second article']);
    assert.equal(await links.first().getAttribute('href'),
                 'https://example.com/a1');
    assert.equal(await art.locator('.article-description').textContent(),
                 'About SSE');

    /* form */
    const form = bubble(page, `form ${t}`);
    await form.waitFor({ timeout: WAIT });
    assert.equal(await form.locator('input[type="email"][name="email"]')
                           .getAttribute('placeholder'), 'you@example.com');
    assert.deepEqual(await form.locator('select[name="topic"] option')
                               .allTextContents(), ['Billing', 'Support']);
    assert.equal(await form.locator('textarea[name="details"]').count(), 1);

    await form.locator('input[name="email"]').fill('a@example.com',
                                                   { timeout: WAIT });
    await form.locator('select[name="topic"]').selectOption('support',
                                                            { timeout: WAIT });
    await form.locator('button.form-submit').click({ timeout: WAIT });
    await form.locator('.form-submitted').waitFor({ timeout: WAIT });
    assert.match(await form.locator('.form-submitted').textContent(),
                 /"email":"a@example.com","topic":"support"/);
    assert.ok(await form.locator('input[name="email"]').isDisabled(),
              'a submitted form is read-only');

    /* input_select */
    const choose = bubble(page, `choose ${t}`);
    await choose.waitFor({ timeout: WAIT });
    assert.deepEqual(await choose.locator('button.option').allTextContents(),
                     ['Yes', 'No']);

    const odd = bubble(page, `odd ${t}`);
    await odd.waitFor({ timeout: WAIT });
    assert.deepEqual(await odd.locator('.card-title').allTextContents(),
                     [`lone ${t}`]);

    assert.deepEqual(page.errors, [], 'no script errors');
    await page.context().close();
});


step('a targeted message appears only in its own window of two',
     async () => {
    const a = await openPage();
    const b = await openPage();
    const t = tag();

    assert.notEqual(a.sessionId, b.sessionId, 'two windows, two sessions');

    await publish({ message: `for A ${t}`, sessionId: a.sessionId });
    await publish({ message: `for B ${t}`, sessionId: b.sessionId });
    await publish({ message: `for all ${t}` });

    /*
     * Each stream delivers in publish order: once a window shows the
     * broadcast, published last, the other session's message would have
     * come before it.
     */
    await bubble(a, `for all ${t}`).waitFor({ timeout: WAIT });
    await bubble(b, `for all ${t}`).waitFor({ timeout: WAIT });

    assert.equal(await bubble(a, `for A ${t}`).count(), 1, 'A has its own');
    assert.equal(await bubble(b, `for B ${t}`).count(), 1, 'B has its own');
    assert.equal(await bubble(a, `for B ${t}`).count(), 0, 'A lacks B\'s');
    assert.equal(await bubble(b, `for A ${t}`).count(), 0, 'B lacks A\'s');

    const rawA = JSON.stringify(await a.evaluate(() => window.__raw));
    assert.ok(!rawA.includes(`for B ${t}`), 'nor did A\'s stream carry it');

    assert.deepEqual([...a.errors, ...b.errors], [], 'no script errors');
    await a.context().close();
    await b.context().close();
});


/*
 * The server ends the page's stream (how depends on `drop`); while the
 * page is away, messages are published; the page must come back and show
 * every message once, in order, with no event sent twice on the wire.
 */

async function dropAndResume(drop, opt = {}) {
    const page = await openPage({ query: opt.query });
    const s = page.sessionId;
    const t = tag();

    if (!opt.longpoll) {
        await waitPosts(s, 'session_opened', 1, WAIT);
    }

    const first = await publish({ message: `before ${t}`, sessionId: s });
    await bubble(page, `before ${t}`).waitFor({ timeout: WAIT });

    await watchStates(page);
    await drop();

    /* a long-poll is answered and polls again: it never looks away */
    if (!opt.longpoll) {
        await page.locator('#state[data-state="reconnecting"]')
                  .waitFor({ timeout: WAIT });
    }

    const away = [];
    away.push(await publish({ message: `away-1 ${t}`, sessionId: s }));
    away.push(await publish({ message: `away-2 ${t}` }));
    away.push(await publish({ message: `away-3 ${t}`, sessionId: s }));

    if (!opt.longpoll) {
        const states = await page.evaluate(() => window.__states);
        assert.ok(!states.includes('connected'),
                  'published while the page was disconnected'
                  + ` (states: ${states.join(', ')})`);

        await page.locator('#state[data-state="connected"]')
                  .waitFor({ timeout: WAIT });
    }

    const last = await publish({ message: `after ${t}`, sessionId: s });
    await bubble(page, `after ${t}`).waitFor({ timeout: WAIT });

    const ids = [first, ...away, last];
    const shown = await page.locator('#chat .bubble').evaluateAll(
        (list) => list.map((b) => b.dataset.messageId));
    const mine = shown.filter((id) => ids.includes(id));

    assert.deepEqual(mine, ids,
                     'each message shown exactly once, in publish order');

    const counts = await rawCounts(page);
    for (const id of ids) {
        assert.equal(counts[id], 1, `message ${id} sent once on the wire`);
    }

    /* back within the grace period: nothing more for the backend */
    if (!opt.longpoll) {
        await marker();
        assert.deepEqual(presencePosts(s).map((p) => p.body.type),
                         ['session_opened'],
                         'the backend got one join and no leave');
    }

    const streams = await page.evaluate(() => window.__raw.filter(
        (e) => JSON.parse(e.data).type === 'connected').length);
    assert.equal(streams, opt.longpoll ? 0 : 2,
                 'one reconnect: two streams opened');

    if (opt.closes) {
        const closes = await page.evaluate(() => window.__closes);
        assert.deepEqual(closes, opt.closes, 'the WebSocket close codes');
    }

    assert.deepEqual(page.errors, [], 'no script errors');
    await page.context().close();
}


/*
 * A window of a new session opens and closes: once the
 * backend has its events, it has every event queued before them (one
 * attempt at a time, in queue order; a close is queued when its grace
 * period ends, and the marker's ends last).
 */
async function marker() {
    const m = await openPage();
    await waitPosts(m.sessionId, 'session_opened', 1, WAIT);
    await m.context().close();
    await waitPosts(m.sessionId, 'session_closed', 1, 5000 + WAIT);
}


step('the page shows how many windows have its session open, on every '
     + 'window, as they open and close; the backend gets one join and one '
     + 'leave (webhook_presence_forward)', async () => {
    const a = await openPage();
    const seen = (page, n) => page.locator(`#presence[data-streams="${n}"]`)
                                  .waitFor({ timeout: WAIT });

    await seen(a, 1);
    assert.equal((await a.locator('#presence').innerText()).trim(),
                 'seen by 1 window');

    const join = await a.locator('#share').getAttribute('href');
    assert.equal(join, `?session=${encodeURIComponent(a.sessionId)}`,
                 'the page links to its session');

    /* other windows (own contexts: own sessionStorage) join by the link */
    const b = await openPage({ path: `/${join}` });
    const c = await openPage({ path: `/${join}` });
    assert.equal(b.sessionId, a.sessionId, 'the link joins the session');

    for (const page of [a, b, c]) {
        await seen(page, 3);
    }
    assert.equal((await a.locator('#presence').innerText()).trim(),
                 'seen by 3 windows');

    const res = await fetch(server.url('/api/webhook/presence?sessionId='
                                       + encodeURIComponent(a.sessionId)),
                            { headers: { 'X-Webhook-Secret': SECRET },
                              signal: AbortSignal.timeout(WAIT) });
    const json = await res.json();
    assert.equal(json.streams, 3, 'the server counts 3 streams');
    assert.ok(json.since <= Date.now(), 'since the first window opened');

    await waitPosts(a.sessionId, 'session_opened', 1, WAIT);

    await c.context().close();
    await seen(a, 2);
    await seen(b, 2);

    await b.context().close();
    await seen(a, 1);

    /* presence is private: a wrong secret hides the line */
    await a.locator('#secret').fill('wrong');
    await a.locator('#presence').waitFor({ state: 'hidden', timeout: WAIT });
    await a.locator('#secret').fill(SECRET);
    await seen(a, 1);

    /* a page reload: its stream ends and comes back within the grace */
    await a.reload({ timeout: WAIT });
    await a.locator('#state[data-state="connected"]')
           .waitFor({ timeout: WAIT });
    assert.equal(await a.locator('#session').textContent(), a.sessionId,
                 'the same session after the page reload');
    await seen(a, 1);

    await marker();
    assert.equal(presencePosts(a.sessionId).length, 1,
                 'three windows and a page reload: one join, no leave');

    assert.deepEqual(a.errors, [], 'no script errors');
    const closed = Date.now();
    await a.context().close();

    await waitPosts(a.sessionId, 'session_closed', 1, 5000 + WAIT);
    await marker();

    const [opened, leave] = presencePosts(a.sessionId);
    assert.equal(presencePosts(a.sessionId).length, 2, 'then one leave');
    assert.equal(opened.body.type, 'session_opened');
    assert.equal(opened.body.streams, 1);
    assert.equal(leave.body.type, 'session_closed');
    assert.equal(leave.body.streams, 0);
    assert.ok(leave.t >= closed + 5000,
              'the leave comes after the 5 s grace period');
    assert.ok(opened.verified && leave.verified, 'both signed');
    assert.notEqual(opened.id, leave.id, 'each with its own webhook-id');
});


step('nginx -s reload drops the stream; the page resumes, no duplicate, '
     + 'nothing missing; the backend: one join, no leave', async () => {
    await dropAndResume(() => server.reload());
});


step('kill -9 of the workers drops the stream; the page resumes, no '
     + 'duplicate, nothing missing; the backend: one join, no leave', async () => {
    await dropAndResume(() => server.killWorkers());
});


step('WebSocket (?transport=websocket): nginx -s reload closes with 1012; '
     + 'the page resumes, no duplicate, nothing missing; the backend: one '
     + 'join, no leave', async () => {
    await dropAndResume(() => server.reload(),
                        { query: '?transport=websocket', closes: [1012] });
});


step('WebSocket: kill -9 of the workers drops it (1006); the page resumes, '
     + 'no duplicate, nothing missing; the backend: one join, no leave',
     async () => {
    await dropAndResume(() => server.killWorkers(),
                        { query: '?transport=websocket', closes: [1006] });
});


step('long-polling (?transport=longpoll): across nginx -s reload, every '
     + 'message once, in order', async () => {
    await dropAndResume(() => server.reload(),
                        { query: '?transport=longpoll', longpoll: true });
});


step('nginx logged no alert, crit or emerg (but the kill -9 itself)',
     async () => {
    await server.stop();
    assert.deepEqual(server.logProblems([/exited on signal 9/]), []);
});
