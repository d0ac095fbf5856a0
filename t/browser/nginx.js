'use strict';

/*
 * A private nginx for the browser tests, like t/lib/WebhookSSE/Test.pm:
 * the configuration is conf/nginx.conf (the one `make run` serves) with
 * only its paths and port changed, the module loaded by absolute path,
 * prefix = a new temporary directory, stopped through its pid file.
 *
 *     const server = await startNginx({ http: 'lines' });
 *                                  (http: added after the zone, optional)
 *     server.url('/')  server.port  server.workerPids()
 *     await server.reload()        (returns the old worker pids)
 *     server.killWorkers()         (kill -9; the master starts new ones)
 *     server.logProblems([/allowed/])  [alert], [crit], [emerg] lines
 *     await server.stop()
 */

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const REPO = path.resolve(__dirname, '..', '..');
const NGINX = process.env.TEST_NGINX_BINARY || '/usr/sbin/nginx';
const MODULE = process.env.TEST_WEBHOOK_SSE_MODULE
               || path.join(REPO, 'build', 'ngx_http_webhook_sse_module.so');

const running = new Set();


function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}


/* polls a condition that no event announces (process table, a port) */

async function waitUntil(what, cond, timeoutMs) {
    const deadline = Date.now() + timeoutMs;

    for (;;) {
        const v = await cond();
        if (v) {
            return v;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
        }
        await new Promise((r) => setTimeout(r, 20));
    }
}


function procStat(pid) {
    let line;

    try {
        line = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch (e) {
        return null;
    }

    const f = line.slice(line.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], ppid: Number(f[1]) };
}


function alive(pid) {
    const st = procStat(pid);
    return st !== null && st.state !== 'Z' && st.state !== 'X';
}


function connects(port) {
    return new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('connect', () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
    });
}


/*
 * conf/nginx.conf with each path and the port replaced; every replacement
 * must match, so a changed conf/nginx.conf fails here instead of quietly
 * running with the repository's run/ paths or on port 8080.
 */

function deriveConfig(text, dir, port, http) {
    const edits = [
        [/^load_module\s+\S+;/m, `load_module ${MODULE};`],
        [/^pid\s+\S+;/m, `pid ${dir}/nginx.pid;`],
        [/^error_log\s+[^;]+;/m, `error_log ${dir}/error.log info;`],
        [/\blisten\s+127\.0\.0\.1:8080;/, `listen 127.0.0.1:${port};`],
        [/\baccess_log\s+\S+/, `access_log ${dir}/access.log`],
        [/\broot\s+conf\/html;/, `root ${REPO}/conf/html;`],
    ];

    for (const t of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
        edits.push([new RegExp(`\\b${t}_temp_path\\s+\\S+;`),
                    `${t}_temp_path ${dir}/tmp/${t};`]);
    }

    /* the test's own http-level lines, after the zone they name */
    if (http) {
        edits.push([/^(\s*webhook_zone\s+zone=chat:[^;]*;)$/m,
                    `$1\n${http}`]);
    }

    for (const [re, to] of edits) {
        if (!re.test(text)) {
            throw new Error(`conf/nginx.conf: nothing matches ${re}`);
        }
        text = text.replace(re, to);
    }

    const left = text.split('\n')
        .filter((l) => !/^\s*#/.test(l))
        .filter((l) => /\brun\/|:8080\b/.test(l));

    if (left.length) {
        throw new Error('conf/nginx.conf: paths or ports the test does not'
                        + ' move:\n' + left.join('\n'));
    }

    /* as root, workers would be nobody, who may not read a checkout */
    if (process.getuid && process.getuid() === 0) {
        text = 'user root;\n' + text;
    }

    return text;
}


class Nginx {

    constructor(dir, port) {
        this.dir = dir;
        this.port = port;
        this.conf = path.join(dir, 'nginx.conf');
        this.errorLog = path.join(dir, 'error.log');
        this.master = null;
    }

    url(p) {
        return `http://127.0.0.1:${this.port}${p}`;
    }

    run(...args) {
        const r = spawnSync(NGINX, ['-p', this.dir + '/', '-c', this.conf,
                                    '-e', this.errorLog, ...args],
                            { encoding: 'utf8', timeout: 20000 });
        if (r.status !== 0) {
            throw new Error(`nginx ${args.join(' ')} failed (${r.status}):`
                            + ` ${r.stdout}${r.stderr}\n${this.logTail()}`);
        }
    }

    masterPid() {
        try {
            const pid = Number.parseInt(
                fs.readFileSync(path.join(this.dir, 'nginx.pid'), 'utf8'), 10);
            return Number.isInteger(pid) && pid > 0 ? pid : null;
        } catch (e) {
            return null;
        }
    }

    workerPids() {
        const master = this.master || this.masterPid();
        if (!master) {
            return [];
        }

        return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))
            .map(Number)
            .filter((p) => {
                const st = procStat(p);
                return st && st.ppid === master
                       && st.state !== 'Z' && st.state !== 'X';
            })
            .sort((a, b) => a - b);
    }

    async start() {
        this.run();
        running.add(this);

        await waitUntil('nginx master, 2 workers and the port', async () => {
            const pid = this.masterPid();
            if (!pid || !alive(pid)) {
                return false;
            }
            this.master = pid;
            return this.workerPids().length === 2 && connects(this.port);
        }, 10000);

        return this;
    }

    /* nginx -s reload; resolves once new workers are up, the old ones quit */

    async reload() {
        const old = this.workerPids();

        this.run('-s', 'reload');

        await waitUntil('new workers after reload', () =>
            this.workerPids().filter((p) => !old.includes(p)).length >= 2,
            10000);

        return old;
    }

    /* kill -9 every worker; the master starts new ones */

    async killWorkers() {
        const old = this.workerPids();

        for (const pid of old) {
            process.kill(pid, 'SIGKILL');
        }

        await waitUntil('workers started again after kill -9', () =>
            this.workerPids().filter((p) => !old.includes(p)).length >= 2,
            10000);

        return old;
    }

    logTail(n = 30) {
        let text = '';
        try {
            text = fs.readFileSync(this.errorLog, 'utf8');
        } catch (e) {
            return '(no error log)';
        }
        return 'error_log tail:\n' + text.split('\n').slice(-n).join('\n');
    }

    /* [alert], [crit] and [emerg] lines, except those expected */

    logProblems(allowed = []) {
        let text = '';
        try {
            text = fs.readFileSync(this.errorLog, 'utf8');
        } catch (e) {
            return [];
        }
        return text.split('\n')
            .filter((l) => /\[(alert|crit|emerg)\]/.test(l))
            .filter((l) => !allowed.some((re) => re.test(l)));
    }

    async stop() {
        if (!running.has(this)) {
            return;
        }
        running.delete(this);

        const master = this.master || this.masterPid();
        if (!master) {
            return;
        }

        const workers = this.workerPids();

        try {
            process.kill(master, 'SIGTERM');
        } catch (e) {
            /* gone already */
        }

        try {
            await waitUntil('nginx master to exit after TERM',
                            () => !alive(master), 10000);
        } catch (e) {
            killNow(master);
        }

        const left = workers.filter(alive);

        try {
            await waitUntil('workers to exit', () => !left.some(alive), 3000);
        } catch (e) {
            left.forEach(killNow);
        }
    }

    /* synchronous last resort, for process exit */

    kill() {
        const master = this.master || this.masterPid();
        const workers = this.workerPids();
        if (master) {
            killNow(master);
        }
        workers.forEach(killNow);
        running.delete(this);
    }
}


function killNow(pid) {
    try {
        process.kill(pid, 'SIGKILL');
    } catch (e) {
        /* gone already */
    }
}


async function startNginx(opt = {}) {
    if (!fs.existsSync(MODULE)) {
        throw new Error(`module not built: ${MODULE} (run make build)`);
    }

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webhook-sse-browser-'));

    for (const t of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
        fs.mkdirSync(path.join(dir, 'tmp', t), { recursive: true });
    }

    const text = fs.readFileSync(path.join(REPO, 'conf', 'nginx.conf'),
                                 'utf8');
    const port = await freePort();
    const server = new Nginx(dir, port);

    fs.writeFileSync(server.conf, deriveConfig(text, dir, port, opt.http));

    return server.start();
}


/* a test run that dies (an exception, Ctrl-C) leaves no nginx behind */

process.on('exit', () => {
    for (const s of running) {
        s.kill();
    }
});

for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
        for (const s of running) {
            s.kill();
        }
        process.exit(130);
    });
}


module.exports = { startNginx, waitUntil, REPO };
