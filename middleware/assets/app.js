// bpu gateway dashboard: plain JavaScript, no framework, nothing external. Each page names
// itself in <body data-page>; the caller's id and role are in data-user and data-role. All data
// comes from the JSON API (/api/v1) with the HttpOnly session cookie; writes send x-bpu-csrf.
'use strict';

(function () {
  const PAGE = document.body.dataset.page || '';
  const ROLE = document.body.dataset.role || '';
  const ME = Number(document.body.dataset.user || 0);
  const STAFF = ROLE === 'admin' || ROLE === 'operator';

  const $ = (sel) => document.querySelector(sel);

  // el('td', {class: 'num'}, 'text', child, ...): attributes as given (false/null: absent).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids) {
      if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  // ---- the API -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  let leaving = false;
  function toLogin() {
    if (leaving) return;
    leaving = true;
    location.href = '/ui/login?next=' + encodeURIComponent(location.pathname);
  }

  // Calls the API; answers the parsed JSON (null for 204) or throws ApiError with the API's
  // typed {"error": {"code", "message"}}. A 401 outside the login page goes to the login page.
  async function api(method, path, body, headers) {
    const h = Object.assign({ Accept: 'application/json' }, headers || {});
    if (method !== 'GET') h['x-bpu-csrf'] = '1';
    if (body !== undefined) h['Content-Type'] = 'application/json';
    let r;
    try {
      r = await fetch(path, {
        method,
        headers: h,
        credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'the gateway did not answer (' + e.message + ')');
    }
    if (r.status === 401 && PAGE !== 'login') {
      toLogin();
      throw new ApiError(401, 'unauthorized', 'the session ended; log in again');
    }
    if (r.status === 204) return null;
    let data = null;
    try {
      data = await r.json();
    } catch (e) {
      data = null;
    }
    if (!r.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(r.status, e.code || 'http_' + r.status, e.message || r.statusText);
    }
    return data;
  }

  function showError(box, e) {
    if (!box || (e instanceof ApiError && e.status === 401 && PAGE !== 'login')) return;
    box.textContent = e instanceof ApiError ? e.message + ' (' + e.code + ')' : String(e);
    box.hidden = false;
  }
  function hide(...boxes) {
    for (const b of boxes) if (b) b.hidden = true;
  }
  function say(box, text) {
    box.textContent = text;
    box.hidden = false;
  }

  // A random UUID; crypto.randomUUID only exists in secure contexts (https or localhost).
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join('-');
  }

  // A positive safe integer from an input, or throws.
  function amountOf(input) {
    const n = Number(input.value);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error('the amount is a whole number, at least 1');
    return n;
  }

  const fmtTime = (ms) => new Date(ms).toLocaleTimeString();
  const fmtDate = (ms) => new Date(ms).toLocaleString();
  const short = (hex) => (hex ? hex.slice(0, 10) + '…' : '');
  const badge = (text) => el('span', { class: 'badge ' + text }, text);

  // Every page of a paginated list (stops after `max` pages).
  async function all(path, max) {
    const out = [];
    let after = 0;
    for (let i = 0; i < (max || 20); i++) {
      const sep = path.includes('?') ? '&' : '?';
      const p = await api('GET', path + sep + 'limit=500' + (after ? '&after=' + after : ''));
      out.push(...p.items);
      if (p.next === null || p.next === undefined) break;
      after = p.next;
    }
    return out;
  }

  // ---- charts ------------------------------------------------------------------------------

  const COLORS = ['#2f6fde', '#e8590c', '#2b8a3e', '#9c36b5', '#c92a2a', '#0b7285', '#5c940d'];

  function fmtNum(v) {
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    if (Math.abs(v) >= 100 || Number.isInteger(v)) return v.toFixed(0);
    return v.toFixed(1);
  }

  // A "nice" step (1, 2 or 5 × 10^k) for about `n` grid lines over `span`.
  function niceStep(span, n) {
    const raw = span / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  // Draws `series` ([{label, data: [number|null]}]) on a canvas: lines, or bars with
  // opts.bars; the y axis starts at 0 unless opts.fit (then it fits the data).
  function drawChart(cv, series, opts) {
    const dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth || 400;
    const h = cv.clientHeight || 180;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
    }
    const g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const L = 48, R = 10, T = 20, B = 16;
    const pw = w - L - R, ph = h - T - B;
    const n = opts.points;
    const vals = series.flatMap((s) => s.data).filter((v) => v !== null && v !== undefined);
    let lo = opts.fit && vals.length ? Math.min(...vals) : 0;
    let hi = vals.length ? Math.max(...vals) : 1;
    if (hi - lo < 1e-9) { hi = lo + (opts.fit ? 2 : 1); lo = opts.fit ? Math.max(0, lo - 1) : lo; }
    const step = niceStep(hi - lo, 4);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const y = (v) => T + ph - ((v - lo) / (hi - lo)) * ph;
    const x = (i) => L + (n > 1 ? (pw * i) / (n - 1) : 0);
    // Grid and y labels.
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    g.textAlign = 'right';
    g.strokeStyle = '#e3e6eb';
    g.fillStyle = '#667085';
    g.lineWidth = 1;
    for (let v = lo; v <= hi + step / 2; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(L, yy); g.lineTo(L + pw, yy); g.stroke();
      g.fillText(fmtNum(v), L - 6, yy);
    }
    g.textAlign = 'left';
    g.fillText('-' + n + ' s', L, h - 7);
    g.textAlign = 'right';
    g.fillText('now', L + pw, h - 7);
    // Data.
    series.forEach((s, k) => {
      const c = COLORS[k % COLORS.length];
      const off = n - s.data.length;
      if (opts.bars) {
        g.fillStyle = c;
        const bw = Math.max(1, pw / n - 1);
        s.data.forEach((v, i) => {
          if (v === null || v === undefined || v <= lo) return;
          const xx = L + (pw * (i + off)) / n;
          g.fillRect(xx, y(v), bw, T + ph - y(v));
        });
      } else {
        g.strokeStyle = c;
        g.lineWidth = 2;
        g.beginPath();
        let pen = false;
        s.data.forEach((v, i) => {
          if (v === null || v === undefined) { pen = false; return; }
          if (pen) g.lineTo(x(i + off), y(v)); else g.moveTo(x(i + off), y(v));
          pen = true;
        });
        g.stroke();
        // Dots where a line cannot show: isolated samples, and the latest one.
        g.fillStyle = c;
        s.data.forEach((v, i) => {
          if (v === null || v === undefined) return;
          const alone = s.data[i - 1] == null && s.data[i + 1] == null;
          if (!alone && i !== s.data.length - 1) return;
          g.beginPath();
          g.arc(x(i + off), y(v), 2.5, 0, 2 * Math.PI);
          g.fill();
        });
      }
    });
    // Legend, top right.
    g.textBaseline = 'top';
    g.textAlign = 'left';
    let lx = L + pw;
    for (let k = series.length - 1; k >= 0; k--) {
      const s = series[k];
      const last = [...s.data].reverse().find((v) => v !== null && v !== undefined);
      const text = s.label + (last === undefined ? '' : ' ' + fmtNum(last));
      lx -= g.measureText(text).width + 22;
      g.fillStyle = COLORS[k % COLORS.length];
      g.fillRect(lx, 4, 10, 10);
      g.fillStyle = '#1d2330';
      g.fillText(text, lx + 14, 3);
    }
  }

  // ---- overview: stats each second, events by SSE -------------------------------------------

  function overview() {
    const N = 60;
    const hist = { heights: [], pre50: [], pre99: [], com50: [], com99: [], tps: [] };
    const push = (a, v) => { a.push(v === undefined ? null : v); if (a.length > N) a.shift(); };
    const statsErr = $('#stats-error');

    function draw() {
      drawChart($('#c-tps'), [{ label: 'tx/s', data: hist.tps }], { points: N, bars: true });
      drawChart($('#c-heights'),
        hist.heights.map((d, i) => ({ label: 'node ' + i, data: d })), { points: N, fit: true });
      drawChart($('#c-preconfirm'),
        [{ label: 'p50', data: hist.pre50 }, { label: 'p99', data: hist.pre99 }], { points: N });
      drawChart($('#c-commit'),
        [{ label: 'p50', data: hist.com50 }, { label: 'p99', data: hist.com99 }], { points: N });
    }

    async function tick() {
      try {
        const s = await api('GET', '/api/v1/stats');
        const t = s.tx;
        hist.tps = (t.committed_per_s || []).slice(-N);
        (s.heights || []).forEach((v, i) => {
          if (!hist.heights[i]) hist.heights[i] = new Array(hist.pre50.length).fill(null);
        });
        hist.heights.forEach((a, i) => push(a, (s.heights || [])[i]));
        push(hist.pre50, t.preconfirm_ms_p50);
        push(hist.pre99, t.preconfirm_ms_p99);
        push(hist.com50, t.commit_ms_p50);
        push(hist.com99, t.commit_ms_p99);
        $('#t-height').textContent = t.height;
        $('#t-tps').textContent = hist.tps.length ? hist.tps[hist.tps.length - 1] : 0;
        $('#t-open').textContent = t.open;
        $('#t-queued').textContent = t.queued;
        const u = s.uptime_s;
        $('#t-uptime').textContent =
          u >= 3600 ? Math.floor(u / 3600) + ' h ' + Math.floor((u % 3600) / 60) + ' min'
            : u >= 60 ? Math.floor(u / 60) + ' min ' + (u % 60) + ' s' : u + ' s';
        hide(statsErr);
        draw();
      } catch (e) {
        showError(statsErr, e);
      }
      if (!leaving) setTimeout(tick, 1000);
    }
    window.addEventListener('resize', draw);
    draw();
    tick();

    // The event log: one row per transaction (updated in place, moved to the top when its
    // state changes) and one per contract event; newest first, at most MAX rows.
    const MAX = 200;
    const log = $('#events');
    const txRows = new Map();
    const stateBox = $('#es-state');
    let lastSeq = 0;
    let es = null;

    function setState(s) {
      stateBox.textContent = s;
      stateBox.className = 'badge ' + s;
    }

    function add(row) {
      log.prepend(row);
      $('#events-empty').hidden = true;
      while (log.rows.length > MAX) {
        const last = log.rows[log.rows.length - 1];
        if (last.dataset.tx) txRows.delete(last.dataset.tx);
        last.remove();
      }
    }

    const acct = (id) => (id === null || id === undefined ? null : '#' + id);

    function onTx(ev) {
      const t = ev.body.tx;
      let row = txRows.get(t.id);
      if (!row) {
        row = el('tr', { id: 'tx-' + t.id, 'data-tx': t.id });
        txRows.set(t.id, row);
      }
      row.dataset.state = t.state;
      row.dataset.seq = ev.seq;
      const from = t.kind === 'mint' ? 'mint' : acct(t.from);
      const to = acct(t.to) || short(t.to_ledger_id);
      const details = [short(t.id)];
      if (t.height !== null && t.height !== undefined) details.push('block ' + t.height);
      if (t.attempts > 1) details.push(t.attempts + ' attempts');
      if (t.reason) details.push(t.reason);
      row.replaceChildren(
        el('td', {}, fmtTime(ev.at_ms)),
        el('td', {}, t.kind),
        el('td', {}, badge(t.state)),
        el('td', { class: 'num' }, t.amount),
        el('td', {}, from + ' → ' + to),
        el('td', { class: 'mono', title: t.id }, details.join(' · ')),
      );
      add(row);
    }

    function onContract(ev) {
      const b = ev.body;
      const amount = b.amount === null || b.amount === undefined ? '' : b.amount;
      const parties = b.from || b.to ? (short(b.from) || '–') + ' → ' + (short(b.to) || '–') : '';
      add(el('tr', { 'data-seq': ev.seq, class: 'contract' },
        el('td', {}, fmtTime(ev.at_ms)),
        el('td', {}, 'contract'),
        el('td', {}, b.contract + '.' + b.name),
        el('td', { class: 'num' }, amount),
        el('td', { class: 'mono' }, parties),
        el('td', { class: 'mono', title: b.ledger_tx_id }, 'block ' + b.height + ' · ' + short(b.ledger_tx_id)),
      ));
    }

    function onMessage(m) {
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch (e) {
        return;
      }
      if (ev.seq <= lastSeq) return;
      lastSeq = ev.seq;
      if (ev.kind === 'tx' && ev.body && ev.body.tx) onTx(ev);
      else if (ev.kind === 'contract' && ev.body) onContract(ev);
    }

    function connect() {
      es = new EventSource('/api/v1/events?after=' + lastSeq);
      es.addEventListener('open', () => setState('live'));
      es.addEventListener('tx', onMessage);
      es.addEventListener('contract', onMessage);
      es.addEventListener('message', onMessage);
      es.addEventListener('error', () => {
        if (es.readyState !== EventSource.CLOSED) { setState('reconnecting'); return; }
        // The server refused the stream (e.g. the session ended): ask why, then retry.
        setState('closed');
        api('GET', '/api/v1/me').then(() => setTimeout(connect, 2000), () => {});
      });
    }
    connect();
  }

  // ---- login ---------------------------------------------------------------------------------

  function login() {
    const form = $('#login-form');
    const err = $('#login-error');
    const next = new URLSearchParams(location.search).get('next');
    const target = next && /^\/ui\/[a-z]*$/.test(next) ? next : '/ui/';
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      hide(err);
      $('#login-submit').disabled = true;
      try {
        await api('POST', '/api/v1/auth/login', {
          name: $('#name').value,
          password: $('#password').value,
          session: true,
        });
        location.href = target;
      } catch (e) {
        showError(err, e);
        $('#login-submit').disabled = false;
      }
    });
  }

  // ---- accounts ------------------------------------------------------------------------------

  function accounts() {
    const tbody = $('#accounts');
    const more = $('#acct-more');
    const listErr = $('#list-error');
    let next = null;

    function row(a) {
      let action = null;
      if (STAFF && a.state !== 'creating') {
        const off = a.state === 'disabled';
        action = el('button', {
          type: 'button', class: 'small', 'data-action': off ? 'enable' : 'disable',
          onclick: async (ev) => {
            ev.target.disabled = true;
            hide(listErr);
            try {
              const n = await api('PATCH', '/api/v1/accounts/' + a.id, { disabled: !off });
              r.replaceWith(row(n));
            } catch (e) {
              showError(listErr, e);
              ev.target.disabled = false;
            }
          },
        }, off ? 'Enable' : 'Disable');
      }
      const r = el('tr', { 'data-account': a.id, class: a.state === 'disabled' ? 'disabled' : false },
        el('td', { class: 'num' }, a.id),
        el('td', {}, a.name),
        el('td', { class: 'num' }, a.owner),
        el('td', {}, badge(a.state)),
        el('td', { class: 'num', 'data-field': 'balance' }, a.balance),
        el('td', { class: 'num', 'data-field': 'pending' }, a.pending),
        el('td', { class: 'num', 'data-field': 'available' }, a.available),
        el('td', { class: 'mono', title: a.ledger_id }, short(a.ledger_id)),
        el('td', {}, action),
      );
      return r;
    }

    async function load(reset) {
      hide(listErr);
      try {
        const after = reset ? 0 : next;
        const p = await api('GET', '/api/v1/accounts?limit=50' + (after ? '&after=' + after : ''));
        if (reset) tbody.replaceChildren();
        for (const a of p.items) tbody.append(row(a));
        next = p.next === undefined ? null : p.next;
        more.hidden = next === null;
      } catch (e) {
        showError(listErr, e);
      }
    }

    more.addEventListener('click', () => load(false));
    $('#acct-refresh').addEventListener('click', () => load(true));
    $('#acct-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const msg = $('#acct-msg'), err = $('#acct-error'), btn = $('#acct-submit');
      hide(msg, err);
      const body = { name: $('#acct-name').value.trim() };
      const owner = $('#acct-owner');
      if (owner && owner.value !== '') body.owner = Number(owner.value);
      btn.disabled = true;
      say(msg, 'Creating ' + body.name + ' (adding its ledger identity to the channel)…');
      try {
        const a = await api('POST', '/api/v1/accounts', body);
        say(msg, 'Account #' + a.id + ' ' + a.name + ' is ' + a.state + '.');
        ev.target.reset();
        load(true);
      } catch (e) {
        hide(msg);
        showError(err, e);
      }
      btn.disabled = false;
    });
    load(true);
  }

  // ---- transfer and mint ----------------------------------------------------------------------

  function transfer() {
    const from = $('#tx-from'), to = $('#tx-to'), ledger = $('#tx-ledger');
    const err = $('#tx-error'), result = $('#tx-result');
    const mintTo = $('#mint-to');
    // The key of the last attempt that may or may not have been stored (network error, 503):
    // the same request again reuses it, so it is never made twice.
    let retry = null;

    async function fill() {
      try {
        const list = (await all('/api/v1/accounts')).filter((a) => a.state === 'active');
        const opt = (a, extra) => el('option', { value: a.id },
          '#' + a.id + ' ' + a.name + (extra ? ' (available ' + a.available + ')' : ''));
        const keep = [from.value, to.value, mintTo ? mintTo.value : ''];
        // Admins may send from any account; everybody else from their own.
        from.replaceChildren(...list.filter((a) => ROLE === 'admin' || a.owner === ME).map((a) => opt(a, true)));
        to.replaceChildren(...list.map((a) => opt(a, false)),
          el('option', { value: 'ledger' }, 'another ledger identity…'));
        if (mintTo) mintTo.replaceChildren(...list.map((a) => opt(a, false)));
        if (keep[0]) from.value = keep[0];
        if (keep[1]) to.value = keep[1];
        if (mintTo && keep[2]) mintTo.value = keep[2];
        if (!from.value && !keep[0] && list.length === 0) say(err, 'There are no active accounts yet: create one on the Accounts page.');
        $('#tx-ledger-label').hidden = to.value !== 'ledger';
      } catch (e) {
        showError(err, e);
      }
    }

    // Follows a transaction until it is final, updating its line (and the result box).
    async function follow(t, line) {
      const show = (v) => {
        line.dataset.state = v.state;
        line.replaceChildren(badge(v.state), ' ', v.kind + ' of ' + v.amount + ' ',
          (v.from ? '#' + v.from : 'mint') + ' → ' + (v.to ? '#' + v.to : short(v.to_ledger_id)) + ' ',
          el('span', { class: 'mono' }, v.id), v.reason ? ' — ' + v.reason : '');
        if (result.dataset.tx === v.id) result.dataset.state = v.state;
      };
      show(t);
      let v = t;
      for (let i = 0; i < 20 && v.state !== 'committed' && v.state !== 'rejected'; i++) {
        try {
          v = await api('GET', '/api/v1/transactions/' + t.id + '?wait=committed&timeout_ms=30000');
          show(v);
        } catch (e) {
          if (e.status === 401) return;
          await new Promise((ok) => setTimeout(ok, 2000));
        }
      }
      fill();
    }

    async function send(path, body, box, btn) {
      hide(err, result, $('#mint-error'));
      const text = JSON.stringify(body);
      const key = retry && retry.text === text ? retry.key : uuid();
      retry = null;
      btn.disabled = true;
      try {
        const t = await api('POST', path, body, { 'Idempotency-Key': key });
        result.dataset.tx = t.id;
        result.dataset.state = t.state;
        say(result, (t.kind === 'mint' ? 'Mint ' : 'Transfer ') + t.id + ' is ' + t.state +
          ': it will commit (see the event log).');
        const line = el('li', { 'data-tx': t.id });
        $('#recent').prepend(line);
        follow(t, line);
        fill();
      } catch (e) {
        if (e.status === 0 || e.status === 503) retry = { text, key };
        showError(box, e);
      }
      btn.disabled = false;
    }

    to.addEventListener('change', () => { $('#tx-ledger-label').hidden = to.value !== 'ledger'; });
    $('#tx-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      let body;
      try {
        body = { from: Number(from.value), amount: amountOf($('#tx-amount')) };
        if (!from.value) throw new Error('choose the paying account');
        if (to.value === 'ledger') body.to = ledger.value.trim().toLowerCase();
        else body.to = Number(to.value);
      } catch (e) {
        hide(result);
        return showError(err, e);
      }
      send('/api/v1/transactions', body, err, $('#tx-submit'));
    });
    if (mintTo) {
      $('#mint-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        let body;
        try {
          body = { to: Number(mintTo.value), amount: amountOf($('#mint-amount')) };
        } catch (e) {
          return showError($('#mint-error'), e);
        }
        send('/api/v1/mints', body, $('#mint-error'), $('#mint-submit'));
      });
    }
    fill();
  }

  // ---- users (admins) -------------------------------------------------------------------------

  function users() {
    const tbody = $('#users');
    const more = $('#user-more');
    const err = $('#user-error'), msg = $('#user-msg');
    let next = null;

    async function patch(u, change, r, ctl) {
      hide(err, msg);
      ctl.disabled = true;
      try {
        const n = await api('PATCH', '/api/v1/users/' + u.id, change);
        r.replaceWith(row(n));
        say(msg, 'User ' + n.name + ' is now ' + n.role + (n.disabled ? ', disabled' : '') + '.');
      } catch (e) {
        showError(err, e);
        r.replaceWith(row(u));
      }
    }

    function row(u) {
      const role = el('select', { 'aria-label': 'role of ' + u.name },
        ...['admin', 'operator', 'user'].map((x) => el('option', { value: x, selected: x === u.role }, x)));
      const toggle = el('button', { type: 'button', class: 'small', 'data-action': u.disabled ? 'enable' : 'disable' },
        u.disabled ? 'Enable' : 'Disable');
      const r = el('tr', { 'data-user': u.id, class: u.disabled ? 'disabled' : false },
        el('td', { class: 'num' }, u.id),
        el('td', {}, u.name, u.id === ME ? ' (you)' : ''),
        el('td', {}, role),
        el('td', {}, badge(u.disabled ? 'disabled' : 'active')),
        el('td', {}, fmtDate(u.created_ms)),
        el('td', {}, toggle),
      );
      role.addEventListener('change', () => patch(u, { role: role.value }, r, role));
      toggle.addEventListener('click', () => patch(u, { disabled: !u.disabled }, r, toggle));
      return r;
    }

    async function load() {
      try {
        const p = await api('GET', '/api/v1/users?limit=50' + (next ? '&after=' + next : ''));
        for (const u of p.items) tbody.append(row(u));
        next = p.next === undefined ? null : p.next;
        more.hidden = next === null;
      } catch (e) {
        showError(err, e);
      }
    }

    more.addEventListener('click', load);
    $('#user-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      hide(err, msg);
      const btn = $('#user-submit');
      btn.disabled = true;
      try {
        const u = await api('POST', '/api/v1/users', {
          name: $('#user-name').value.trim(),
          role: $('#user-role').value,
          password: $('#user-password').value,
        });
        say(msg, 'Created user #' + u.id + ' ' + u.name + ' (' + u.role + ').');
        ev.target.reset();
        if (next === null) tbody.append(row(u));
      } catch (e) {
        showError(err, e);
      }
      btn.disabled = false;
    });
    load();
  }

  // ---- start ---------------------------------------------------------------------------------

  const logout = $('#logout');
  if (logout) {
    logout.addEventListener('click', async () => {
      logout.disabled = true;
      try {
        await api('POST', '/api/v1/auth/logout');
      } catch (e) {
        // Gone already: the login page either way.
      }
      leaving = true;
      location.href = '/ui/login';
    });
  }
  const pages = { login, overview, accounts, transfer, users };
  if (pages[PAGE]) pages[PAGE]();
})();
