// logtally dashboard: plain JS, no dependencies, no build step.
//
// Data comes from the query target's JSON API. Two Server-Sent Events
// streams push every change: /api/v1/watch/top (the top N, as /api/v1/top)
// and /api/v1/watch/overview (totals, the all-IP series and the latest
// complete minute, and with decisions=1 "decisions" events: the active
// decisions and the rules file's mode, per change; time left is counted
// down here). Everything shown from the data (IPs, dead-letter lines,
// decision keys and reasons) is set with textContent, never parsed as HTML.
'use strict';

(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const numFmt = new Intl.NumberFormat('en-US');
  const fmt = (n) => numFmt.format(n);
  const $ = (sel) => document.querySelector(sel);

  // state is also kept in the URL (history.replaceState), so a view can be
  // shared and survives a manual reload.
  const state = {
    last: '15m', from: '', to: '', n: 10,
    ip: '', cidr: '',
    cls: '', // class filter from a clicked status: '', '4xx', '5xx'
    fields: null, // the last /api/v1/watch/fields event
    top: null, overview: null, ipSeries: null,
    dead: -1,
    decisions: null, // the last "decisions" event
    clockSkew: 0, // server clock minus this one's, from that event
  };
  const streams = [];

  // ---------- helpers ----------

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const k in attrs) {
        if (k === 'class') e.className = attrs[k];
        else if (k === 'text') e.textContent = attrs[k];
        else e.setAttribute(k, attrs[k]);
      }
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function parseDur(s) {
    const m = /^(\d+)([mhd])$/.exec(s);
    if (!m) return 0;
    return Number(m[1]) * ({ m: 1, h: 60, d: 1440 })[m[2]];
  }

  // rangeMinutes is the length of the selected range in minutes.
  function rangeMinutes() {
    if (state.from && state.to) return (Date.parse(state.to) - Date.parse(state.from)) / 60000;
    return parseDur(state.last);
  }

  // stepFor picks the series step: about 60–300 points.
  function stepFor(min) {
    if (min <= 180) return '1m';
    if (min <= 12 * 60) return '5m';
    if (min <= 48 * 60) return '15m';
    if (min <= 14 * 1440) return '1h';
    return '1d';
  }

  function rangeParams() {
    const p = new URLSearchParams();
    if (state.from && state.to) { p.set('from', state.from); p.set('to', state.to); } else p.set('last', state.last);
    return p;
  }

  function apiURL(path, extra) {
    const p = rangeParams();
    if (extra) for (const k in extra) p.set(k, extra[k]);
    return path + '?' + p.toString();
  }

  async function getJSON(url) {
    const resp = await fetch(url, { headers: { Accept: 'application/json' } });
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) throw new Error((body && body.error) || (resp.status + ' ' + resp.statusText));
    return body;
  }

  function pad(n) { return String(n).padStart(2, '0'); }
  function hhmm(d) { return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()); }
  function ymd(d) { return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()); }
  function fmtTime(iso, withDate) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    return withDate ? ymd(d) + ' ' + hhmm(d) : hhmm(d);
  }
  function fmtRange(from, to) {
    const f = new Date(from), t = new Date(to);
    const sameDay = ymd(f) === ymd(t) || (t - f <= 86400000 && hhmm(t) === '00:00');
    return fmtTime(from, !sameDay) + ' – ' + fmtTime(to, !sameDay) + ' UTC';
  }
  function pct(part, whole) {
    if (!whole) return '';
    const v = (part / whole) * 100;
    return (v >= 10 || v === 0 ? v.toFixed(1) : v.toFixed(2)) + '%';
  }
  function compact(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(n % 1e9 ? 1 : 0) + 'G';
    if (n >= 1e6) return (n / 1e6).toFixed(n % 1e6 ? 1 : 0) + 'M';
    if (n >= 1e4) return (n / 1e3).toFixed(n % 1e3 ? 1 : 0) + 'k';
    return fmt(n);
  }
  function showError(msg) {
    const e = $('#error');
    if (!msg) { e.hidden = true; e.textContent = ''; return; }
    e.textContent = msg;
    e.hidden = false;
  }
  function setLive(s, text) {
    const e = $('#live');
    e.dataset.state = s;
    e.textContent = text;
  }
  function isIP(s) { return /^[0-9a-fA-F:.]+(%[^/]*)?$/.test(s) && (s.includes('.') || s.includes(':')); }

  // ---------- addresses and decisions ----------

  // ipBytes is an IPv4 (4) or IPv6 (16) address as bytes, or null.
  function ipBytes(s) {
    s = s.replace(/%.*$/, '');
    const v4 = (x) => {
      const p = x.split('.');
      if (p.length !== 4 || !p.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255)) return null;
      return p.map(Number);
    };
    if (!s.includes(':')) return v4(s);
    let tail4 = [];
    if (s.includes('.')) {
      const i = s.lastIndexOf(':');
      tail4 = v4(s.slice(i + 1));
      if (!tail4) return null;
      s = s.slice(0, i + 1) + '0:0'; // its two groups, filled in below
    }
    const halves = s.split('::');
    if (halves.length > 2) return null;
    const groups = (x) => (x === '' ? [] : x.split(':'));
    const head = groups(halves[0]), tail = halves.length === 2 ? groups(halves[1]) : [];
    const fill = 8 - head.length - tail.length;
    if (halves.length === 1 ? fill !== 0 : fill < 1) return null;
    const all = head.concat(Array(halves.length === 2 ? fill : 0).fill('0'), tail);
    const out = [];
    for (const g of all) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      const v = parseInt(g, 16);
      out.push(v >> 8, v & 255);
    }
    if (tail4.length) out.splice(12, 4, ...tail4);
    return out;
  }

  // parsePrefix is "addr/bits" (or a bare address) as {bytes, bits}, or null.
  function parsePrefix(s) {
    const i = s.indexOf('/');
    const b = ipBytes(i < 0 ? s : s.slice(0, i));
    if (!b) return null;
    const len = i < 0 ? String(b.length * 8) : s.slice(i + 1);
    const bits = Number(len);
    if (!/^\d{1,3}$/.test(len) || bits > b.length * 8) return null;
    return { bytes: b, bits };
  }

  function prefixContains(p, b) {
    if (!p || !b || p.bytes.length !== b.length) return false;
    let bits = p.bits;
    for (let i = 0; bits > 0; i++, bits -= 8) {
      const mask = bits >= 8 ? 255 : (0xff << (8 - bits)) & 255;
      if ((p.bytes[i] & mask) !== (b[i] & mask)) return false;
    }
    return true;
  }

  // keyText is a decision's key as bouncers get it: a bare address for a
  // single address, else the prefix.
  function keyText(d) {
    const p = d.net;
    return p && p.bits === p.bytes.length * 8 ? d.key.slice(0, d.key.indexOf('/')) : d.key;
  }

  function serverNow() { return Date.now() + state.clockSkew; }
  function leftMs(d) { return Date.parse(d.until) - serverNow(); }

  // fmtLeft: 45s, 9m 58s, 3h 07m, 2d 04h.
  function fmtLeft(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + pad(Math.floor(s / 60) % 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + pad(Math.floor(s / 3600) % 24) + 'h';
  }

  // activeDecisions are the decisions of the last event not yet over by
  // this page's clock (the server's expiry event follows).
  function activeDecisions() {
    if (!state.decisions) return [];
    return state.decisions.items.filter((d) => leftMs(d) > 0);
  }

  // markOf is how the top list marks ip: banned by an enforced decision
  // covering it (the one lasting longest), else simulated, else null.
  function markOf(ip, active) {
    const b = ipBytes(ip);
    let banned = null, simulated = null;
    for (const d of active) {
      if (!prefixContains(d.net, b)) continue;
      const later = (o) => !o || Date.parse(d.until) > Date.parse(o.until);
      if (d.simulated) { if (later(simulated)) simulated = d; } else if (later(banned)) banned = d;
    }
    if (banned) return { kind: 'banned', d: banned };
    if (simulated) return { kind: 'simulated', d: simulated };
    return null;
  }

  function markTitle(m) {
    const by = m.d.rule === 'manual' ? 'by hand' : 'by rule ' + m.d.rule;
    const what = m.kind === 'banned' ? 'banned ' + by : 'simulated decision ' + by + ' (not enforced)';
    return what + ' (' + keyText(m.d) + '), ' + fmtLeft(leftMs(m.d)) + ' left';
  }

  // countdowns are the texts that show a time left, rewritten by tick:
  // {el, d, text(d)}; each render replaces its own list.
  const countdowns = { top: [], table: [] };

  // ---------- charts ----------

  // renderTop draws the top N as horizontal bars: rank, IP, bar, count,
  // share of every request in the range.
  function renderTop() {
    const box = $('#top-chart');
    const top = state.top;
    if (!top) return;
    const items = top.items || [];
    $('#top-range').textContent = fmtRange(top.from, top.to);
    if (items.length === 0) {
      box.replaceChildren(h('div', { class: 'empty', text: 'No requests in this range.' }));
      return;
    }
    const total = state.overview ? state.overview.totals.requests : 0;
    const active = activeDecisions();
    const marks = items.map((it) => markOf(it.ip, active));
    countdowns.top = [];
    const W = Math.max(360, box.clientWidth || 600);
    const rowH = 28;
    const H = items.length * rowH;
    const maxCount = Math.max(...items.map((i) => i.count));
    const rankW = 34;
    const maxIP = Math.min(39, Math.max(11, ...items.map((i) => i.ip.length)));
    const ipW = maxIP * 7.7 + 16;
    const countW = Math.max(...items.map((i) => fmt(i.count).length)) * 8 + 22;
    const shareW = total ? 58 : 0;
    const markW = marks.some((m) => m) ? 78 : 0;
    const barX = rankW + ipW + markW;
    const barW = Math.max(24, W - barX - countW - shareW - 4);
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'list', class: 'top-bars' });
    items.forEach((it, i) => {
      const y = rowH / 2;
      const share = pct(it.count, total);
      const mark = marks[i];
      const g = svg('g', {
        class: 'row' + (it.ip === state.ip ? ' selected' : '') + (mark ? ' ' + mark.kind : ''),
        transform: `translate(0 ${i * rowH})`, tabindex: '0', role: 'listitem',
        'data-ip': it.ip, 'data-count': String(it.count),
        'aria-label': `${it.ip}: ${fmt(it.count)} requests` + (mark ? ', ' + mark.kind : ''),
      });
      if (mark) g.setAttribute('data-mark', mark.kind);
      g.append(svg('title', null, `${it.ip} — ${fmt(it.count)} requests${share ? ' (' + share + ' of all)' : ''}`));
      g.append(svg('rect', { class: 'bg', x: 0, y: 1, width: W, height: rowH - 2, rx: 5 }));
      g.append(svg('text', { class: 'rank', x: rankW - 10, y, 'text-anchor': 'end', 'dominant-baseline': 'central' }, i + 1));
      const ipText = it.ip.length > maxIP ? it.ip.slice(0, maxIP - 1) + '…' : it.ip;
      g.append(svg('text', { class: 'ip', x: rankW, y, 'dominant-baseline': 'central' }, ipText));
      if (mark) {
        const bw = mark.kind === 'banned' ? 56 : 70;
        const badge = svg('g', { class: 'badge ' + mark.kind, transform: `translate(${rankW + ipW - 6} 0)` });
        const title = svg('title', null, markTitle(mark));
        countdowns.top.push({ el: title, d: mark.d, text: () => markTitle(mark) });
        badge.append(title);
        badge.append(svg('rect', { x: 0, y: 6, width: bw, height: rowH - 12, rx: 4 }));
        badge.append(svg('text', { x: bw / 2, y, 'text-anchor': 'middle', 'dominant-baseline': 'central' }, mark.kind));
        g.append(badge);
      }
      const bw = Math.max(2, (it.count / maxCount) * barW);
      g.append(svg('rect', { class: 'bar', x: barX, y: 7, width: bw.toFixed(1), height: rowH - 14, rx: 2.5 }));
      g.append(svg('text', { class: 'count', x: barX + barW + countW - 6, y, 'text-anchor': 'end', 'dominant-baseline': 'central' }, fmt(it.count)));
      if (shareW) g.append(svg('text', { class: 'share', x: W - 4, y, 'text-anchor': 'end', 'dominant-baseline': 'central' }, share));
      root.append(g);
    });
    box.replaceChildren(root);
  }

  // ---------- fields ----------

  const FIELDS = [
    ['status', 'Status codes'], ['method', 'Methods'], ['path', 'Requested paths'], ['vhost', 'Virtual hosts'],
    ['ua', 'Browsers and bots'], ['os', 'Operating systems'], ['program', 'Syslog programs'], ['event', 'Login events'],
  ];
  const CLASS_TEXT = { '4xx': 'client errors (4xx)', '5xx': 'server errors (5xx)' };

  // classOfStatus is the class a clicked status narrows to.
  function classOfStatus(v) {
    const c = parseInt(v, 10);
    if (c >= 400 && c < 500) return '4xx';
    if (c >= 500 && c < 600) return '5xx';
    return '';
  }

  // renderFields draws one table per field: value, count, share of the
  // field's total, and the exact remainder as "other".
  function renderFields() {
    const grid = $('#field-grid');
    const ev = state.fields;
    if (!ev) return;
    $('#fields-range').textContent = fmtRange(ev.from, ev.to) + (ev.class !== 'requests' ? ' · by ' + (CLASS_TEXT[ev.class] || ev.class) : '');
    const panels = FIELDS.map(([name, label]) => {
      const f = (ev.fields || {})[name] || { items: [], other: 0, total: {} };
      const total = (f.items || []).reduce((a, it) => a + it.count, 0) + (f.other || 0);
      const rows = (f.items || []).map((it) => {
        const click = name === 'status' && classOfStatus(it.value) !== '';
        const tr = h('tr', { 'data-field': name, 'data-value': it.value, 'data-count': String(it.count), class: click ? 'clickable' : '' },
          h('td', { class: 'v', title: it.value, text: it.value }),
          h('td', { class: 'num', text: fmt(it.count) }),
          h('td', { class: 'num share', text: pct(it.count, total) }));
        if (click) { tr.tabIndex = 0; tr.title = 'Rank by ' + CLASS_TEXT[classOfStatus(it.value)]; }
        return tr;
      });
      if (f.other > 0) rows.push(h('tr', { class: 'other', 'data-field': name, 'data-other': String(f.other) },
        h('td', { class: 'v muted', text: 'other' }), h('td', { class: 'num', text: fmt(f.other) }), h('td', { class: 'num share', text: pct(f.other, total) })));
      if (rows.length === 0) rows.push(h('tr', null, h('td', { class: 'muted', colspan: '3', text: 'None in this range.' })));
      return h('article', { class: 'panel field', id: 'field-' + name, 'data-field': name },
        h('h3', { text: label }),
        h('table', null, h('tbody', null, ...rows)));
    });
    grid.replaceChildren(...panels);
  }

  function setClassFilter(cls) {
    state.cls = cls;
    const f = $('#filter');
    f.hidden = !cls;
    $('#filter-text').textContent = cls ? 'Ranked by ' + (CLASS_TEXT[cls] || cls) : '';
    rangeChanged();
  }

  // renderDecisions fills the decisions panel from the last event.
  function renderDecisions() {
    const ev = state.decisions;
    if (!ev) return;
    const panel = $('#decisions-panel');
    const simulate = ev.mode === 'simulate';
    panel.dataset.mode = ev.rules_file ? ev.mode : '';
    $('#decisions-mode-badge').hidden = !simulate;
    const mode = $('#decisions-mode');
    mode.className = 'mode' + (simulate ? ' notice' : ' muted');
    if (simulate) {
      mode.textContent = 'Simulate mode (rules file): the rules\' decisions are recorded and listed here, flagged simulated, ' +
        'and not enforced — bouncers, the blocklist, the nginx file and the webhook do not get them. Bans by hand are enforced.';
    } else if (ev.rules_file) {
      mode.textContent = 'Enforce mode: decisions are served to bouncers, the blocklist, the nginx file and the webhook.';
    } else {
      mode.textContent = 'This query target has no -rules.file, so it does not know the rules\' mode; decisions flagged simulated are not enforced.';
    }
    const active = activeDecisions();
    const cut = ev.total > ev.items.length;
    $('#decisions-count').textContent = cut ? `newest ${fmt(ev.items.length)} of ${fmt(ev.total)} active` : `${fmt(active.length)} active`;
    countdowns.table = [];
    const rows = active.map((d) => {
      const left = h('td', { class: 'num left', title: 'until ' + fmtTime(d.until, true) + ' UTC', text: fmtLeft(leftMs(d)) });
      countdowns.table.push({ el: left, d, text: () => fmtLeft(leftMs(d)) });
      const manual = d.origin === 'manual';
      const ruleTitle = manual ? 'a ban by hand' : `${d.class || 'requests'} over ${d.range || '?'} above ${fmt(d.threshold)}` + (d.window ? ', in ' + d.window : '') + (d.offence ? `; offence ${d.offence + 1}` : '');
      const origin = h('td', { class: 'origin', title: 'by ' + d.by + ', ' + fmtTime(d.created, true) + ' UTC' }, manual ? 'manual' : 'detector');
      if (d.simulated) origin.append(' ', h('span', { class: 'badge sim', text: 'simulated' }));
      return h('tr', { class: d.simulated ? 'simulated' : '', 'data-id': String(d.id), 'data-key': d.key },
        h('td', { class: 'mono key', title: d.key, text: keyText(d) }),
        h('td', { class: 'rule', title: ruleTitle, text: d.rule }),
        h('td', { class: 'num count', text: manual && !d.threshold ? '–' : fmt(d.count) + ' / ' + fmt(d.threshold) }),
        left,
        origin,
        h('td', { class: 'reason', title: d.reason || '', text: d.reason || '' }));
    });
    if (rows.length === 0) rows.push(h('tr', null, h('td', { colspan: '6', class: 'muted', text: 'No active decisions.' })));
    $('#decisions-table tbody').replaceChildren(...rows);
  }

  function onDecisions(ev) {
    for (const d of ev.items) d.net = parsePrefix(d.key);
    const now = Date.parse(ev.now);
    state.clockSkew = isNaN(now) ? 0 : now - Date.now();
    state.decisions = ev;
    renderDecisions();
    renderTop();
  }

  // tick rewrites the times left; a decision that ran out leaves the
  // panel and the top list at once.
  function tick() {
    let over = false;
    for (const list of [countdowns.table, countdowns.top]) {
      for (const c of list) {
        if (leftMs(c.d) <= 0) over = true;
        const t = c.text();
        if (c.el.textContent !== t) c.el.textContent = t;
      }
    }
    if (over) { renderDecisions(); renderTop(); }
  }

  function niceStep(max, ticks) {
    const raw = Math.max(max, 1) / ticks;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    const nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
    return Math.max(1, nf * p);
  }

  const TICKS_MIN = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080];

  // renderSeries draws points [{start, count}] of [from, to) with step as an
  // area chart; the last point is drawn dashed when it is still in progress.
  function renderSeries(box, series, opts) {
    const pts = series.series || [];
    if (pts.length === 0) { box.replaceChildren(h('div', { class: 'empty', text: 'No data.' })); return; }
    const W = Math.max(320, box.clientWidth || 600);
    const H = opts.height || 230;
    const m = { l: 52, r: 14, t: 10, b: 26 };
    const iw = W - m.l - m.r, ih = H - m.t - m.b;
    const t0 = Date.parse(series.from), t1 = Date.parse(series.to);
    const stepMs = parseDur(series.step) * 60000 || 60000;
    const maxV = Math.max(...pts.map((p) => p.count));
    const ys = niceStep(maxV, 4);
    const ymax = Math.max(ys, Math.ceil(maxV / ys) * ys);
    const x = (t) => m.l + ((t - t0) / (t1 - t0)) * iw;
    const y = (v) => m.t + ih - (v / ymax) * ih;
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: opts.cls || '' });

    const axis = svg('g', { class: 'axis' });
    for (let v = 0; v <= ymax + 1e-9; v += ys) {
      axis.append(svg('line', { class: v === 0 ? 'baseline' : 'gridline', x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
      axis.append(svg('text', { x: m.l - 8, y: y(v), 'text-anchor': 'end', 'dominant-baseline': 'central' }, compact(v)));
    }
    const spanMin = (t1 - t0) / 60000;
    const maxLabels = Math.max(2, Math.floor(iw / 70));
    const tick = TICKS_MIN.find((t) => spanMin / t <= maxLabels) || 10080;
    const tickMs = tick * 60000;
    const withDate = spanMin > 1440;
    for (let t = Math.ceil(t0 / tickMs) * tickMs; t <= t1; t += tickMs) {
      const d = new Date(t);
      const label = withDate && (tick >= 1440 || hhmm(d) === '00:00') ? ymd(d).slice(5) : hhmm(d);
      axis.append(svg('line', { class: 'gridline', x1: x(t), x2: x(t), y1: m.t + ih, y2: m.t + ih + 4 }));
      axis.append(svg('text', { x: x(t), y: H - 6, 'text-anchor': 'middle' }, label));
    }
    root.append(axis);

    const now = Date.now();
    const mid = (p) => Date.parse(p.start) + Math.min(stepMs, t1 - Date.parse(p.start)) / 2;
    let done = pts.length;
    const lastStart = Date.parse(pts[pts.length - 1].start);
    if (pts.length > 1 && lastStart + stepMs > now) done = pts.length - 1; // in progress
    const coords = pts.map((p) => [x(mid(p)), y(p.count)]);
    const path = (cs) => cs.map((c, i) => (i ? 'L' : 'M') + c[0].toFixed(1) + ' ' + c[1].toFixed(1)).join(' ');
    const full = coords.slice(0, done);
    if (full.length > 0) {
      const area = path(full) + ` L${full[full.length - 1][0].toFixed(1)} ${y(0)} L${full[0][0].toFixed(1)} ${y(0)} Z`;
      root.append(svg('path', { class: 'area', d: area }));
      root.append(svg('path', { class: 'line', d: path(full) }));
    }
    if (done < pts.length) {
      root.append(svg('path', { class: 'line partial', d: path(coords.slice(Math.max(0, done - 1))) }));
    }
    // Hover targets with the exact value of each step.
    const hits = svg('g');
    const bw = iw / pts.length;
    pts.forEach((p, i) => {
      const g = svg('g', { class: 'hit' });
      const s = Date.parse(p.start);
      const label = `${fmtTime(p.start, withDate)}–${fmtTime(new Date(Math.min(s + stepMs, t1)).toISOString(), false)} UTC: ${fmt(p.count)} ${opts.unit || 'requests'}${i >= done ? ' (in progress)' : ''}`;
      g.append(svg('title', null, label));
      g.append(svg('rect', { x: (coords[i][0] - bw / 2).toFixed(1), y: m.t, width: Math.max(1, bw).toFixed(1), height: ih }));
      g.append(svg('circle', { class: 'dot', cx: coords[i][0].toFixed(1), cy: coords[i][1].toFixed(1), r: 3.5 }));
      hits.append(g);
    });
    root.append(hits);
    box.replaceChildren(root);
  }

  // ---------- panels ----------

  // renderRPM draws the all-IP series about as tall as the top list beside it.
  function renderRPM() {
    if (!state.overview) return;
    const rows = state.top ? Math.max(8, state.top.items.length) : state.n;
    renderSeries($('#rpm-chart'), state.overview.series, { unit: 'requests', height: Math.min(520, Math.max(230, rows * 28)) });
  }

  function onOverview(ov) {
    const prevDead = state.overview ? state.overview.totals.dead_letters : -1;
    state.overview = ov;
    const t = ov.totals;
    $('#stat-requests').textContent = fmt(t.requests);
    $('#stat-range').textContent = fmtRange(t.from, t.to);
    $('#stat-distinct').textContent = fmt(t.distinct_ips);
    $('#stat-dead').textContent = fmt(t.dead_letters);
    $('#stat-late').textContent = fmt(t.late);
    $('#stat-rate').textContent = fmt(ov.last_minute.count) + '/min';
    $('#stat-rate-hint').textContent = 'minute from ' + fmtTime(ov.last_minute.start) + ' UTC';
    const step = ov.series.step;
    $('#rpm-title').textContent = step === '1m' ? 'Requests per minute' : 'Requests per ' + step;
    renderRPM();
    renderTop(); // shares depend on the total
    if (t.dead_letters !== prevDead) loadDeadLetters();
    if (state.ip) loadIP(state.ip, false);
    else if (state.cidr) loadCIDR(state.cidr, false);
  }

  let ipSeq = 0;
  async function loadIP(ip, fresh) {
    const my = ++ipSeq;
    const box = $('#ip-detail');
    if (fresh) box.replaceChildren(h('p', { class: 'muted', text: 'Loading ' + ip + '…' }));
    try {
      const step = stepFor(rangeMinutes());
      const s = await getJSON(apiURL('/api/v1/ips/' + encodeURIComponent(ip), { step }));
      if (my !== ipSeq) return;
      renderIP(s);
    } catch (err) {
      if (my !== ipSeq) return;
      box.replaceChildren(h('p', { class: 'err', text: err.message }));
    }
  }

  function renderIP(s) {
    const box = $('#ip-detail');
    const total = state.overview ? state.overview.totals.requests : 0;
    const stepMs = parseDur(s.step) * 60000;
    let first = null, last = null;
    for (const p of s.series) {
      if (p.count > 0) { if (!first) first = p; last = p; }
    }
    const withDate = rangeMinutes() > 1440;
    // The step window holding the first or last request.
    const when = (p) => {
      const a = Date.parse(p.start);
      const b = a + Math.min(stepMs, Date.parse(s.to) - a);
      return fmtTime(p.start, withDate) + '–' + fmtTime(new Date(b).toISOString(), false) + ' UTC';
    };
    const head = h('div', { class: 'ip-head' },
      h('span', { class: 'ip-name', text: s.ip }),
      h('span', { class: 'ip-count', text: fmt(s.count) }),
      h('span', { class: 'muted', text: 'requests in ' + fmtRange(s.from, s.to) }));
    const dl = h('dl', null,
      h('dt', { text: 'share of traffic' }), h('dd', { class: 'ip-share', text: total ? pct(s.count, total) + ' of ' + fmt(total) : '–' }),
      h('dt', { text: 'first seen' }), h('dd', { class: 'ip-first', text: first ? when(first) : 'not in this range' }),
      h('dt', { text: 'last seen' }), h('dd', { class: 'ip-last', text: last ? when(last) : 'not in this range' }));
    const chart = h('div', { class: 'chart ip-chart' });
    box.replaceChildren(head, dl, chart);
    renderSeries(chart, s, { cls: 'ip-series', height: 190, unit: 'requests' });
  }

  let cidrSeq = 0;
  async function loadCIDR(cidr, fresh) {
    const my = ++cidrSeq;
    const box = $('#ip-detail');
    if (fresh) box.replaceChildren(h('p', { class: 'muted', text: 'Loading ' + cidr + '…' }));
    try {
      const top = await getJSON(apiURL('/api/v1/top', { cidr, n: 50 }));
      if (my !== cidrSeq) return;
      const sum = top.items.reduce((a, i) => a + i.count, 0);
      const total = state.overview ? state.overview.totals.requests : 0;
      const head = h('div', { class: 'ip-head' },
        h('span', { class: 'ip-name', text: cidr }),
        h('span', { class: 'ip-count', text: fmt(sum) }),
        h('span', { class: 'muted', text: `requests from the top ${top.items.length} IPs of this network` + (total ? ' (' + pct(sum, total) + ' of all)' : '') }));
      const tbody = h('tbody');
      for (const it of top.items) {
        const tr = h('tr', { 'data-ip': it.ip, tabindex: '0' },
          h('td', { class: 'mono', text: it.ip }),
          h('td', { class: 'num', text: fmt(it.count) }),
          h('td', { class: 'num', text: pct(it.count, total) }));
        tbody.append(tr);
      }
      const table = h('table', { class: 'cidr' },
        h('thead', null, h('tr', null, h('th', { text: 'IP' }), h('th', { class: 'num', text: 'requests' }), h('th', { class: 'num', text: 'share' }))),
        tbody);
      box.replaceChildren(head, top.items.length ? h('div', { class: 'table-wrap' }, table) : h('p', { class: 'muted', text: 'No requests from this network in the range.' }));
    } catch (err) {
      if (my !== cidrSeq) return;
      box.replaceChildren(h('p', { class: 'err', text: err.message }));
    }
  }

  let deadSeq = 0;
  async function loadDeadLetters() {
    const my = ++deadSeq;
    const tbody = $('#dead-table tbody');
    try {
      const d = await getJSON('/api/v1/dead-letters?n=50');
      if (my !== deadSeq) return;
      const rows = d.items.map((it) => {
        const line = h('div', { class: 'line', title: it.line + (it.truncated ? ' … (' + fmt(it.length) + ' bytes)' : '') });
        line.textContent = it.line === '' ? '(empty line)' : it.line;
        if (it.truncated) line.append(h('span', { class: 'cut', text: ' … ' + fmt(it.length) + ' bytes' }));
        const t = new Date(it.received);
        return h('tr', null,
          h('td', { class: 'time', text: isNaN(t) ? it.received : ymd(t).slice(5) + ' ' + hhmm(t) + ':' + pad(t.getUTCSeconds()) }),
          h('td', { class: 'src' }, h('div', { text: it.source }), h('div', { class: 'mono muted', text: it.peer })),
          h('td', { class: 'what' }, h('div', { class: 'reason', title: it.reason, text: it.reason }), line));
      });
      if (rows.length === 0) rows.push(h('tr', null, h('td', { colspan: '3', class: 'muted', text: 'No dead letters.' })));
      tbody.replaceChildren(...rows);
    } catch (err) {
      if (my !== deadSeq) return;
      tbody.replaceChildren(h('tr', null, h('td', { colspan: '3', class: 'err', text: err.message })));
    }
  }

  function selectIP(ip) {
    state.ip = ip;
    state.cidr = '';
    $('#q').value = ip;
    saveURL();
    renderTop();
    loadIP(ip, true);
  }

  function search(q) {
    q = q.trim();
    if (!q) return;
    if (q.includes('/')) {
      state.cidr = q; state.ip = '';
      saveURL(); renderTop(); loadCIDR(q, true);
    } else if (isIP(q)) {
      selectIP(q);
    } else {
      $('#ip-detail').replaceChildren(h('p', { class: 'err', text: `"${q}" is neither an IP nor a CIDR prefix such as 203.0.113.0/24` }));
    }
  }

  // ---------- streams ----------

  function closeStreams() {
    while (streams.length) streams.pop().close();
  }

  // watch opens one EventSource; a stream the server refused (e.g. 400 on
  // bad parameters) is not retried: its error message is shown instead.
  // named maps event types other than the default to their handlers.
  function watch(url, onData, named) {
    const es = new EventSource(url);
    const handle = (fn) => (e) => {
      let d;
      try { d = JSON.parse(e.data); } catch (_) { return; }
      fn(d);
      showError('');
      setLive('live', 'live · ' + new Date().toISOString().slice(11, 19) + ' UTC');
    };
    es.onmessage = handle(onData);
    if (named) for (const type in named) es.addEventListener(type, handle(named[type]));
    es.onerror = async () => {
      if (es.readyState === EventSource.CLOSED) {
        setLive('error', 'stopped');
        try { await getJSON(url); } catch (err) { showError(err.message); }
      } else {
        setLive('reconnecting', 'reconnecting…');
      }
    };
    streams.push(es);
  }

  function connect() {
    closeStreams();
    state.top = null;
    state.overview = null;
    setLive('connecting', 'connecting…');
    const step = stepFor(rangeMinutes());
    const cls = state.cls ? { class: state.cls } : {};
    watch(apiURL('/api/v1/watch/top', { n: state.n, ...cls }), (top) => { state.top = top; renderTop(); renderRPM(); });
    watch(apiURL('/api/v1/watch/fields', { n: 8, ...cls }), (ev) => { state.fields = ev; renderFields(); });
    watch(apiURL('/api/v1/watch/overview', { step, decisions: 1 }), onOverview, { decisions: onDecisions });
  }

  // ---------- controls and URL ----------

  function saveURL() {
    const p = rangeParams();
    p.set('n', state.n);
    if (state.cls) p.set('class', state.cls);
    if (state.ip) p.set('ip', state.ip);
    if (state.cidr) p.set('cidr', state.cidr);
    history.replaceState(null, '', '?' + p.toString());
  }

  function syncControls() {
    const custom = !!(state.from && state.to);
    for (const b of document.querySelectorAll('#ranges button')) {
      b.setAttribute('aria-pressed', String(custom ? !!b.dataset.custom : b.dataset.last === state.last));
    }
    $('#custom').hidden = !custom && !$('#custom').dataset.open;
    $('#n').value = String(state.n);
    $('#top-n').textContent = String(state.n);
    if (custom) {
      $('#from').value = state.from.slice(0, 16);
      $('#to').value = state.to.slice(0, 16);
    }
  }

  function rangeChanged() {
    syncControls();
    saveURL();
    showError('');
    connect();
  }

  function readURL() {
    const p = new URLSearchParams(location.search);
    if (p.get('from') && p.get('to')) { state.from = p.get('from'); state.to = p.get('to'); state.last = ''; } else if (p.get('last')) { state.last = p.get('last'); }
    const n = parseInt(p.get('n'), 10);
    if (n > 0 && n <= 1000) state.n = n;
    state.cls = ['4xx', '5xx'].includes(p.get('class')) ? p.get('class') : '';
    state.ip = p.get('ip') || '';
    state.cidr = state.ip ? '' : (p.get('cidr') || '');
  }

  function init() {
    readURL();
    const nSel = $('#n');
    if (![...nSel.options].some((o) => o.value === String(state.n))) nSel.append(h('option', { value: String(state.n), text: String(state.n) }));
    document.querySelectorAll('#ranges button').forEach((b) => b.addEventListener('click', () => {
      if (b.dataset.custom) {
        const f = $('#custom');
        f.dataset.open = '1';
        f.hidden = false;
        if (!state.from) {
          const to = new Date(Math.ceil(Date.now() / 60000) * 60000);
          const from = new Date(to - 3600000);
          $('#from').value = from.toISOString().slice(0, 16);
          $('#to').value = to.toISOString().slice(0, 16);
        }
        return;
      }
      delete $('#custom').dataset.open;
      state.last = b.dataset.last; state.from = ''; state.to = '';
      rangeChanged();
    }));
    $('#custom').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = $('#from').value, t = $('#to').value;
      if (!f || !t) { showError('Give both from and to.'); return; }
      const from = new Date(f + ':00Z'), to = new Date(t + ':00Z');
      if (isNaN(from) || isNaN(to)) { showError('from and to must be dates and times.'); return; }
      if (to <= from) { showError('to must be after from.'); return; }
      state.from = from.toISOString().replace('.000Z', 'Z');
      state.to = to.toISOString().replace('.000Z', 'Z');
      state.last = '';
      rangeChanged();
    });
    nSel.addEventListener('change', () => { state.n = parseInt(nSel.value, 10) || 10; rangeChanged(); });
    const grid = $('#field-grid');
    const pick = (e) => {
      const row = e.target.closest('tr[data-field="status"][data-value]');
      if (row && classOfStatus(row.dataset.value)) setClassFilter(classOfStatus(row.dataset.value));
    };
    grid.addEventListener('click', pick);
    grid.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(e); } });
    $('#filter-clear').addEventListener('click', () => setClassFilter(''));
    $('#filter').hidden = !state.cls;
    $('#filter-text').textContent = state.cls ? 'Ranked by ' + CLASS_TEXT[state.cls] : '';
    $('#search').addEventListener('submit', (e) => { e.preventDefault(); search($('#q').value); });
    const chart = $('#top-chart');
    chart.addEventListener('click', (e) => {
      const row = e.target.closest('[data-ip]');
      if (row) selectIP(row.getAttribute('data-ip'));
    });
    chart.addEventListener('keydown', (e) => {
      const row = e.target.closest('[data-ip]');
      if (row && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); selectIP(row.getAttribute('data-ip')); }
    });
    $('#ip-detail').addEventListener('click', (e) => {
      const row = e.target.closest('tr[data-ip]');
      if (row) selectIP(row.getAttribute('data-ip'));
    });
    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        renderTop();
        renderRPM();
        if (state.ip) loadIP(state.ip, false);
      }, 150);
    });
    syncControls();
    connect();
    setInterval(tick, 250);
    loadDeadLetters();
    if (state.ip) { $('#q').value = state.ip; loadIP(state.ip, true); } else if (state.cidr) { $('#q').value = state.cidr; loadCIDR(state.cidr, true); }
  }

  init();
})();
