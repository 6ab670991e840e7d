// keyledger dashboard: a thin client over the JSON API under /api/.
// No framework, no network access beyond this origin. Every value from the vault is put
// into the page with textContent (never innerHTML). A new token lives only in the DOM of
// the page that created it, until "I have stored it" or a reload.
'use strict';

(function () {
  const page = document.body.dataset.page;
  let csrf = null;

  // ------------------------------------------------------------------ helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') el.textContent = v;
      else el.setAttribute(k, String(v));
    }
    for (const c of children) el.append(c);
    return el;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || ('HTTP ' + status));
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (method !== 'GET') {
      opts.headers['Content-Type'] = 'application/json';
      if (csrf) opts.headers['X-CSRF-Token'] = csrf;
      opts.body = JSON.stringify(body || {});
    }
    let res;
    try {
      res = await fetch('/api' + path, opts);
    } catch (e) {
      throw new ApiError(0, { error: 'network', message: 'cannot reach the dashboard server: ' + e.message });
    }
    let data = null;
    try { data = await res.json(); } catch (_) { data = { message: res.statusText }; }
    if (res.status === 401 && data && data.error === 'unauthorized' && page !== 'login') {
      location.assign('/login');
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  function flash(kind, text) {
    const box = document.getElementById('flash');
    box.replaceChildren(h('div', { class: 'msg ' + kind, text }));
    if (kind === 'ok') setTimeout(() => { if (box.firstChild && box.firstChild.textContent === text) box.replaceChildren(); }, 6000);
  }
  function flashError(e) {
    const code = e.body && e.body.error ? ' (' + e.status + ' ' + e.body.error + ')' : '';
    flash('error', e.message + code);
  }
  function clearFlash() { document.getElementById('flash').replaceChildren(); }

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return '—';
    const d = new Date(ms);
    if (isNaN(d)) return String(ms);
    return d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
  }
  function fmtDuration(ms) {
    const sec = ms / 1000;
    if (sec % 86400 === 0) return sec / 86400 + ' d';
    if (sec % 3600 === 0) return sec / 3600 + ' h';
    if (sec % 60 === 0) return sec / 60 + ' min';
    return sec + ' s';
  }
  // A datetime-local value (local time) → unix ms, or '' when blank.
  function localToMs(v) {
    if (!v) return '';
    const t = new Date(v).getTime();
    return isNaN(t) ? v : t;
  }
  function query() { return new URLSearchParams(location.search); }
  function setQuery(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
    const qs = q.toString();
    history.replaceState(null, '', location.pathname + (qs ? '?' + qs : ''));
  }

  function field(label, input) { return h('label', {}, label, input); }
  function input(name, attrs) { return h('input', Object.assign({ name, id: 'f-' + name }, attrs || {})); }
  function select(name, options, attrs) {
    return h('select', Object.assign({ name, id: 'f-' + name }, attrs || {}),
      options.map((o) => (Array.isArray(o) ? h('option', { value: o[0], text: o[1] }) : h('option', { value: o, text: o }))));
  }
  function values(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.type === 'checkbox') out[el.name] = el.checked;
      else out[el.name] = el.value;
    }
    return out;
  }

  // A form whose submit runs `action(values, submitter)`; errors show on the page and
  // the form keeps what was typed.
  function form(id, children, action, cls) {
    const f = h('form', { id, class: cls || 'inline', autocomplete: 'off', novalidate: true }, children);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const buttons = f.querySelectorAll('button');
      buttons.forEach((b) => { b.disabled = true; });
      try {
        await action(values(f), ev.submitter);
      } catch (e) {
        if (e instanceof ApiError) flashError(e);
        else flash('error', String(e && e.message ? e.message : e));
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    });
    return f;
  }

  async function guarded(fn) {
    try { await fn(); } catch (e) {
      if (e instanceof ApiError) flashError(e); else flash('error', String(e && e.message ? e.message : e));
    }
  }

  function table(headers, rows, emptyText) {
    if (!rows.length) return h('div', { class: 'table-wrap' }, h('div', { class: 'empty', text: emptyText }));
    return h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, headers.map((x) => (Array.isArray(x) ? h('th', { class: x[1], text: x[0] }) : h('th', { text: x }))))),
      h('tbody', {}, rows)));
  }

  function content(...nodes) {
    document.getElementById('content').replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
  }

  function keyStatus(k) {
    if (k.revoked_at !== null && k.revoked_at !== undefined) return 'revoked';
    if (k.disabled) return 'disabled';
    if (k.expires_at !== null && k.expires_at !== undefined && k.expires_at <= Date.now()) return 'expired';
    return 'active';
  }

  async function accountOptions(withAll) {
    const accounts = await api('GET', '/accounts');
    const opts = accounts.map((a) => [a.id, a.id]);
    return withAll ? [['', 'all accounts']].concat(opts) : opts;
  }

  // -------------------------------------------------------------------- login

  function loginPage() {
    const f = document.getElementById('login-form');
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = document.getElementById('token').value;
      try {
        await api('POST', '/login', { token });
        location.assign('/keys');
      } catch (e) {
        flashError(e);
      }
    });
  }

  // ----------------------------------------------------------------- accounts

  async function accountsPage() {
    const [accounts, holds] = await Promise.all([api('GET', '/accounts'), api('GET', '/holds')]);
    const ids = accounts.map((a) => a.id);
    // Holds: what active holds reserve, per account (an account's credits are available ones).
    const held = {};
    for (const x of holds) held[x.account_id] = (held[x.account_id] || 0) + x.amount;
    const rows = accounts.map((a) => h('tr', { dataset: { account: a.id } },
      h('td', {}, h('code', { text: a.id })),
      h('td', { class: 'num', text: a.credits.toLocaleString('en-US') }),
      h('td', { class: 'num held', text: (held[a.id] || 0).toLocaleString('en-US') }),
      h('td', { class: 'num', text: a.total_credits.toLocaleString('en-US') }),
      h('td', { text: a.refill ? a.refill.amount + ' ' + (a.refill.interval === 'monthly' ? 'monthly on day ' + a.refill.day : 'daily') : '—' }),
      h('td', { text: fmtTime(a.created_at) }),
      h('td', { class: 'actions' },
        h('a', { href: '/keys?account=' + encodeURIComponent(a.id), text: 'keys' }), ' · ',
        h('a', { href: '/audit?account=' + encodeURIComponent(a.id), text: 'audit' }), ' · ',
        h('a', { href: '/limits?account=' + encodeURIComponent(a.id), text: 'limits' }))));

    const create = form('account-form', [
      field('Account id', input('id', { class: 'wide', placeholder: 'acct_42', required: true })),
      field('Credits', input('credits', { class: 'narrow', inputmode: 'numeric', value: '0' })),
      field('Metadata (JSON object, optional)', input('metadata', { class: 'wide', placeholder: '{"plan": "pro"}' })),
      h('button', { type: 'submit', text: 'Create account' }),
    ], async (v) => {
      const a = await api('POST', '/accounts', v);
      await accountsPage();
      flash('ok', 'Created account ' + a.id + ' with ' + a.credits + ' credits.');
    });

    const topUp = form('topup-form', [
      field('Account', select('account', ids)),
      field('Amount', input('amount', { class: 'narrow', inputmode: 'numeric', required: true })),
      field('Reference (optional)', input('reference', { placeholder: 'invoice id' })),
      h('button', { type: 'submit', text: 'Top up' }),
    ], async (v) => {
      const b = await api('POST', '/accounts/' + encodeURIComponent(v.account) + '/top-up', { amount: v.amount, reference: v.reference });
      await accountsPage();
      flash('ok', 'Added ' + v.amount + ' credits to ' + b.account_id + ': ' + b.credits + ' now.');
    });

    const refill = form('refill-form', [
      field('Account', select('account', ids)),
      field('Credits after each refill', input('amount', { class: 'narrow', inputmode: 'numeric' })),
      field('Interval', select('interval', ['daily', 'monthly'])),
      field('Day (monthly)', input('day', { class: 'narrow', inputmode: 'numeric', value: '1' })),
      h('button', { type: 'submit', name: 'do', value: 'set', text: 'Set refill' }),
      h('button', { type: 'submit', name: 'do', value: 'clear', class: 'secondary', text: 'Clear refill' }),
    ], async (v, submitter) => {
      const path = '/accounts/' + encodeURIComponent(v.account) + '/refill';
      if (submitter && submitter.value === 'clear') {
        await api('POST', path + '/clear', {});
        await accountsPage();
        flash('ok', 'Account ' + v.account + ' has no refill plan now.');
      } else {
        await api('POST', path, { amount: v.amount, interval: v.interval, day: v.day });
        await accountsPage();
        flash('ok', 'Account ' + v.account + ' refills to ' + v.amount + ' credits ' + v.interval + '.');
      }
    });

    const holdRows = holds.map((x) => h('tr', { dataset: { hold: x.hold_id } },
      h('td', {}, h('code', { text: x.hold_id })),
      h('td', {}, h('code', { text: x.account_id })),
      h('td', { class: 'num', text: x.amount.toLocaleString('en-US') }),
      h('td', { text: fmtTime(x.expires_at) })));

    content(
      table(['Account', ['Available', 'num'], ['Held', 'num'], ['Total added', 'num'], 'Refill', 'Created', ''], rows, 'No accounts yet: create one below.'),
      h('h2', { text: 'Active holds' }),
      table(['Hold', 'Account', ['Amount', 'num'], 'Expires'], holdRows, 'No active holds.'),
      h('div', { class: 'grid' },
        h('div', { class: 'card' }, h('h2', { text: 'Create an account' }), create),
        h('div', { class: 'card' }, h('h2', { text: 'Top up' }), ids.length ? topUp : h('p', { class: 'muted', text: 'Create an account first.' })),
        h('div', { class: 'card' }, h('h2', { text: 'Refill (a quota that resets)' }),
          h('p', { class: 'muted', text: 'At the first call after each boundary (00:00 UTC) the credits are set to the amount.' }),
          ids.length ? refill : h('p', { class: 'muted', text: 'Create an account first.' }))));
  }

  // --------------------------------------------------------------------- keys

  let revealed = null; // { token, signing_secret, key } of the last creation, this page view only

  function secretPanel() {
    if (!revealed) return null;
    const tokenEl = h('code', { class: 'token', id: 'new-token', text: revealed.token });
    const copy = h('button', { type: 'button', id: 'copy-token', text: 'Copy', onclick: async () => {
      try {
        await navigator.clipboard.writeText(revealed.token);
        copy.textContent = 'Copied';
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(tokenEl);
        const sel = getSelection(); sel.removeAllRanges(); sel.addRange(range);
        copy.textContent = 'Selected: press Ctrl+C';
      }
    } });
    const parts = [
      h('h2', { text: (revealed.rotated ? 'Rotated: new key ' : 'New key ') + revealed.key.key_id }),
      h('p', { text: 'Copy the token now. It is shown once: keyledger stores only its hash and cannot show it again.' }),
      tokenEl,
    ];
    if (revealed.signing_secret) {
      parts.push(h('p', { text: 'Signing secret (also shown once):' }),
        h('code', { class: 'token', id: 'new-signing-secret', text: revealed.signing_secret }));
    }
    parts.push(h('div', { class: 'row' }, copy,
      h('button', { type: 'button', class: 'secondary', id: 'dismiss-token', text: 'I have stored it', onclick: () => { revealed = null; clearFlash(); guarded(keysPage); } })));
    return h('div', { class: 'card secret-panel', id: 'secret-panel' }, parts);
  }

  let keysRender = 0; // the newest keysPage call; an older one finishing later draws nothing

  async function keysPage() {
    const mine = ++keysRender;
    const q = query();
    const account = q.get('account') || '';
    const [keys, accOpts] = await Promise.all([
      api('GET', '/keys' + (account ? '?account=' + encodeURIComponent(account) : '')),
      accountOptions(false),
    ]);
    if (mine !== keysRender) return;
    const act = (k, verb, label, cls, confirmText) => h('button', {
      type: 'button', class: 'small ' + (cls || 'secondary'), dataset: { action: verb, key: k.key_id }, text: label,
      onclick: () => guarded(async () => {
        if (confirmText && !confirm(confirmText)) return;
        // Any change to a key ends the one-time display, before the request: a render that
        // shows the change (even one started earlier and finishing later) never shows it.
        revealed = null;
        await api('POST', '/keys/' + encodeURIComponent(k.key_id) + '/' + verb, {});
        await keysPage();
        flash('ok', 'Key ' + k.key_id + ': ' + verb + 'd.');
      }),
    });
    const rows = keys.map((k) => {
      const st = keyStatus(k);
      return h('tr', { class: st === 'active' ? '' : 'inactive', dataset: { keyId: k.key_id, status: st } },
        h('td', {}, h('code', { text: k.key_id })),
        h('td', {}, h('code', { text: k.style === 'colon' ? '(colon)' : k.prefix })),
        h('td', { text: k.name }),
        h('td', {}, h('a', { href: '/accounts', text: k.account_id })),
        h('td', {}, k.operator ? h('span', { class: 'badge operator', text: 'operator' }) : null,
          k.scopes.map((sc) => h('span', { class: 'scope', text: sc }))),
        h('td', {}, h('span', { class: 'badge ' + st, text: st }), k.signing ? ' signed' : ''),
        h('td', { text: k.expires_at === null ? 'never' : fmtTime(k.expires_at) }),
        h('td', { text: k.last_used_at === null ? 'never' : fmtTime(k.last_used_at) }),
        h('td', { class: 'actions' },
          st === 'revoked' ? null : (k.disabled ? act(k, 'enable', 'Enable') : act(k, 'disable', 'Disable')),
          st === 'revoked' ? null : act(k, 'revoke', 'Revoke', 'danger', 'Revoke key ' + k.key_id + ' for good? Requests with it are refused from now on.'),
          h('a', { href: '/usage?key=' + encodeURIComponent(k.key_id), text: 'usage' }), ' · ',
          h('a', { href: '/audit?key=' + encodeURIComponent(k.key_id), text: 'audit' })));
    });

    const filter = form('keys-filter', [
      field('Account', select('account', [['', 'all accounts']].concat(accOpts))),
      h('button', { type: 'submit', class: 'secondary', text: 'Show' }),
    ], async (v) => { setQuery({ account: v.account }); revealed = null; await keysPage(); });
    filter.elements.account.value = account;

    const create = form('key-form', [
      field('Account', select('account_id', accOpts)),
      field('Name', input('name', { placeholder: 'production server', required: true })),
      field('Prefix', input('prefix', { placeholder: 'kl_live', value: 'kl_live' })),
      field('Token style', select('style', [['prefixed', 'prefixed: <prefix>_<key_id>_<secret>'],
        ['colon', 'colon: <key_id>:<secret> (no checksum)']])),
      field('Scopes (comma-separated)', input('scopes', { class: 'wide', placeholder: 'sms:send, numbers:read' })),
      field('Expires (local time, optional)', input('expires_at', { type: 'datetime-local' })),
      h('label', { class: 'check' }, input('operator', { type: 'checkbox' }), 'Operator (every scope, never charged)'),
      h('label', { class: 'check' }, input('signing', { type: 'checkbox' }), 'Signed requests'),
      h('button', { type: 'submit', text: 'Create key' }),
    ], async (v) => {
      const body = {
        account_id: v.account_id, name: v.name, prefix: v.prefix, style: v.style, scopes: v.scopes,
        expires_at: localToMs(v.expires_at), operator: v.operator, signing: v.signing,
      };
      const r = await api('POST', '/keys', body);
      revealed = { token: r.token, signing_secret: r.signing_secret, key: r.key };
      await keysPage();
      flash('ok', 'Created key ' + r.key.key_id + '. Copy its token now: it will not be shown again.');
    });
    if (account) create.elements.account_id.value = account;

    const live = keys.filter((k) => keyStatus(k) !== 'revoked');
    const manage = form('key-manage', [
      field('Key', select('key_id', live.map((k) => [k.key_id, k.key_id + ' · ' + k.name]))),
      field('Scopes (comma-separated)', input('scopes', { class: 'wide', placeholder: 'sms:send' })),
      h('button', { type: 'submit', name: 'do', value: 'scopes', class: 'secondary', text: 'Set scopes' }),
      field('Expires (local time)', input('expires_at', { type: 'datetime-local' })),
      h('button', { type: 'submit', name: 'do', value: 'expiry', class: 'secondary', text: 'Set expiry' }),
      h('button', { type: 'submit', name: 'do', value: 'never', class: 'secondary', text: 'Never expire' }),
      field('Grace (seconds the old key keeps working)', input('grace', { class: 'narrow', inputmode: 'numeric', value: '0' })),
      h('button', { type: 'submit', name: 'do', value: 'rotate', text: 'Rotate' }),
      h('p', { class: 'muted rotate-note', hidden: true,
        text: 'Rotation is offered for enabled, unexpired keys not already rotated (rotate the newest key instead).' }),
    ], async (v, submitter) => {
      const what = submitter ? submitter.value : '';
      const base = '/keys/' + encodeURIComponent(v.key_id);
      if (what === 'scopes') {
        revealed = null;
        const k = await api('POST', base + '/scopes', { scopes: v.scopes });
        await keysPage();
        flash('ok', 'Key ' + k.key_id + ' scopes: ' + (k.scopes.join(', ') || '(none)') + '.');
      } else if (what === 'expiry') {
        if (!v.expires_at) throw new Error('choose an expiry time, or press "Never expire"');
        revealed = null;
        const k = await api('POST', base + '/expiry', { expires_at: localToMs(v.expires_at) });
        await keysPage();
        flash('ok', 'Key ' + k.key_id + ' expires ' + fmtTime(k.expires_at) + '.');
      } else if (what === 'never') {
        revealed = null;
        const k = await api('POST', base + '/expiry', {});
        await keysPage();
        flash('ok', 'Key ' + k.key_id + ' never expires now.');
      } else if (what === 'rotate') {
        const r = await api('POST', base + '/rotate', { grace: v.grace });
        revealed = { token: r.token, signing_secret: r.signing_secret, key: r.key, rotated: true };
        await keysPage();
        flash('ok', 'Rotated ' + v.key_id + ' → ' + r.key.key_id + '; the old key ' +
          (r.old.expires_at === null ? 'keeps working' : 'stops at ' + fmtTime(r.old.expires_at)) + '. Copy the new token now.');
      }
    });

    // Offer rotation only where the core allows it (the API refuses the rest anyway).
    const rotatable = new Set(keys.filter((k) => k.rotatable).map((k) => k.key_id));
    const syncRotate = () => {
      const ok = rotatable.has(manage.elements.key_id.value);
      const button = manage.querySelector('button[value="rotate"]');
      button.disabled = !ok;
      button.hidden = !ok;
      manage.querySelector('.rotate-note').hidden = ok;
    };
    manage.elements.key_id.addEventListener('change', syncRotate);
    if (live.length) syncRotate();

    content(
      secretPanel(),
      h('div', { class: 'section' }, filter),
      table(['Key id', 'Prefix', 'Name', 'Account', 'Scopes', 'Status', 'Expires', 'Last used', ''], rows,
        'No keys' + (account ? ' for this account' : '') + ' yet.'),
      h('div', { class: 'card' }, h('h2', { text: 'Create a key' }),
        accOpts.length ? create : h('p', { class: 'muted', text: 'Create an account first (Accounts page).' })),
      h('div', { class: 'card' }, h('h2', { text: 'Change a key' }),
        live.length ? manage : h('p', { class: 'muted', text: 'No live keys.' })));
  }

  // ------------------------------------------------------------------- routes

  const METHODS = ['*', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

  async function routesPage() {
    const routes = await api('GET', '/routes');
    const rows = routes.map((r) => h('tr', {},
      h('td', {}, h('code', { text: r.method })),
      h('td', {}, h('code', { text: r.pattern })),
      h('td', {}, h('span', { class: 'scope', text: r.scope })),
      h('td', { class: 'num', text: r.cost }),
      h('td', { class: 'actions' }, h('button', {
        type: 'button', class: 'small danger', text: 'Remove',
        onclick: () => guarded(async () => {
          if (!confirm('Remove the rule ' + r.method + ' ' + r.pattern + '? Requests it allowed are refused afterwards.')) return;
          await api('POST', '/routes/remove', { method: r.method, pattern: r.pattern });
          await routesPage();
          flash('ok', 'Removed ' + r.method + ' ' + r.pattern + '.');
        }),
      }))));

    const add = form('route-form', [
      field('Method', select('method', METHODS)),
      field('Pattern', input('pattern', { class: 'wide', placeholder: '/api/v1/messaging/send' })),
      field('Scope', input('scope', { placeholder: 'sms:send' })),
      field('Cost', input('cost', { class: 'narrow', inputmode: 'numeric', value: '0' })),
      h('button', { type: 'submit', text: 'Add rule' }),
    ], async (v) => {
      const r = await api('POST', '/routes', v);
      await routesPage();
      flash('ok', 'Added ' + r.method + ' ' + r.pattern + ' → ' + r.scope + ' (cost ' + r.cost + ').');
    });

    const result = h('div', { class: 'result', id: 'match-result' });
    const tester = form('match-form', [
      field('Method', select('method', METHODS.slice(1))),
      field('Path', input('path', { class: 'wide', placeholder: '/api/v1/messaging/send' })),
      h('button', { type: 'submit', class: 'secondary', text: 'Which rule matches?' }),
    ], async (v) => {
      const r = await api('GET', '/routes/match?method=' + encodeURIComponent(v.method) + '&path=' + encodeURIComponent(v.path));
      clearFlash();
      if (r.matched) {
        result.replaceChildren(h('div', { class: 'msg ok' }, v.method + ' ' + v.path + ' → rule ', h('code', { text: r.rule.method + ' ' + r.rule.pattern }),
          ': needs scope ', h('code', { text: r.rule.scope }), ', costs ' + r.rule.cost + ' credit(s).'));
      } else {
        result.replaceChildren(h('div', { class: 'msg error', text: 'No rule matches ' + v.method + ' ' + v.path + ': refused ' + r.status + ' ' + r.refusal.error + ' (deny by default).' }));
      }
    });

    content(
      table(['Method', 'Pattern', 'Scope', ['Cost', 'num'], ''], rows, 'No route rules: every route is refused (deny by default).'),
      h('div', { class: 'grid' },
        h('div', { class: 'card' }, h('h2', { text: 'Add a rule' }),
          h('p', { class: 'muted', text: 'Literal segments, :name segments and an optional trailing *. The most specific rule wins.' }), add),
        h('div', { class: 'card' }, h('h2', { text: 'Test a request' }), tester, result)));
  }

  // -------------------------------------------------------------- rate limits

  async function limitsPage() {
    const q = query();
    const filter = q.get('key') ? '?key=' + encodeURIComponent(q.get('key')) : (q.get('account') ? '?account=' + encodeURIComponent(q.get('account')) : '');
    const limits = await api('GET', '/limits' + filter);
    const rows = limits.map((l) => h('tr', {},
      h('td', { text: l.owner }),
      h('td', {}, h('code', { text: l.owner_id })),
      h('td', {}, h('code', { text: l.name })),
      h('td', { class: 'num', text: l.limit }),
      h('td', { text: 'per ' + fmtDuration(l.duration_ms) }),
      h('td', { text: l.auto_apply ? 'every call' : 'when named' }),
      h('td', { class: 'actions' }, h('button', {
        type: 'button', class: 'small danger', text: 'Remove',
        onclick: () => guarded(async () => {
          const body = { name: l.name };
          body[l.owner === 'key' ? 'key_id' : 'account_id'] = l.owner_id;
          await api('POST', '/limits/remove', body);
          await limitsPage();
          flash('ok', 'Removed rate limit ' + l.name + ' of ' + l.owner + ' ' + l.owner_id + '.');
        }),
      }))));

    const set = form('limit-form', [
      field('On', select('owner', [['account', 'an account (shared by its keys)'], ['key', 'a key']])),
      field('Account id / key id', input('owner_id', { placeholder: 'acct_42' })),
      field('Name', input('name', { placeholder: 'per-minute' })),
      field('Limit (calls)', input('limit', { class: 'narrow', inputmode: 'numeric' })),
      field('Per (seconds)', input('seconds', { class: 'narrow', inputmode: 'numeric', value: '60' })),
      field('Applies', select('applies', [['every_call', 'to every call'], ['when_named', 'when a call names it']])),
      h('button', { type: 'submit', text: 'Set limit' }),
    ], async (v) => {
      const body = { name: v.name, limit: v.limit, seconds: v.seconds, applies: v.applies };
      body[v.owner === 'key' ? 'key_id' : 'account_id'] = v.owner_id;
      const l = await api('POST', '/limits', body);
      await limitsPage();
      flash('ok', 'Rate limit ' + l.name + ': ' + l.limit + ' per ' + fmtDuration(l.duration_ms) + ' on ' + l.owner + ' ' + l.owner_id + '.');
    });
    if (q.get('key')) { set.elements.owner.value = 'key'; set.elements.owner_id.value = q.get('key'); }
    if (q.get('account')) { set.elements.owner.value = 'account'; set.elements.owner_id.value = q.get('account'); }

    content(
      filter ? h('p', {}, 'Showing the limits of ' + (q.get('key') ? 'key ' + q.get('key') : 'account ' + q.get('account')) + '. ', h('a', { href: '/limits', text: 'Show all' })) : null,
      table(['Owner', 'Id', 'Name', ['Limit', 'num'], 'Window', 'Applies', ''], rows, 'No rate limits.'),
      h('div', { class: 'card' }, h('h2', { text: 'Set a rate limit' }),
        h('p', { class: 'muted', text: 'Setting an existing name replaces it. Counters are shared by every process on this host.' }), set));
  }

  // -------------------------------------------------------------------- audit

  const ACTIONS = ['account_created', 'credits_added', 'credits_debited', 'credits_refilled', 'key_created',
    'key_rotated', 'key_revoked', 'key_disabled', 'key_enabled', 'key_scopes_changed', 'key_expiry_changed',
    'signing_secret_revealed', 'master_key_rotated', 'route_added', 'route_removed', 'ratelimit_set',
    'ratelimit_removed', 'auth_refused', 'operator_authorized'];

  async function auditPage() {
    const q = query();
    const params = {
      key: q.get('key') || '', account: q.get('account') || '', action: q.get('action') || '',
      since: q.get('since') || '', limit: q.get('limit') || '100',
    };
    const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '')).toString();
    const entries = await api('GET', '/audit?' + qs);
    const rows = entries.map((e) => h('tr', {},
      h('td', { class: 'num', text: e.seq }),
      h('td', { text: fmtTime(e.time) }),
      h('td', {}, h('code', { text: e.action })),
      h('td', {}, e.key_id ? h('a', { href: '/audit?key=' + encodeURIComponent(e.key_id), text: e.key_id }) : '—'),
      h('td', {}, e.account_id ? h('a', { href: '/audit?account=' + encodeURIComponent(e.account_id), text: e.account_id }) : '—'),
      h('td', { text: e.actor || '—' }),
      h('td', {}, h('pre', { class: 'details mono', text: e.details && Object.keys(e.details).length ? JSON.stringify(e.details) : '' }))));

    const sinceLocal = params.since ? new Date(Number(params.since) - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16) : '';
    const filters = form('audit-filter', [
      field('Key id', input('key', { class: 'narrow', value: params.key })),
      field('Account', input('account', { value: params.account })),
      field('Action', select('action', [['', 'any action']].concat(ACTIONS))),
      field('Since (local time)', input('since', { type: 'datetime-local', value: sinceLocal })),
      field('Limit', input('limit', { class: 'narrow', inputmode: 'numeric', value: params.limit })),
      h('button', { type: 'submit', text: 'Filter' }),
      h('a', { href: '/audit', text: 'clear' }),
    ], async (v) => {
      setQuery({ key: v.key.trim(), account: v.account.trim(), action: v.action, since: localToMs(v.since), limit: v.limit.trim() });
      await auditPage();
    });
    filters.elements.action.value = params.action;

    const limit = Number(params.limit) || 100;
    const more = entries.length >= limit && limit < 10000 ? h('button', {
      type: 'button', class: 'secondary', id: 'audit-more', text: 'Load older entries',
      onclick: () => guarded(async () => {
        setQuery(Object.assign({}, params, { limit: Math.min(limit + 100, 10000) }));
        await auditPage();
      }),
    }) : null;

    content(
      h('div', { class: 'card' }, filters),
      h('p', { class: 'muted', text: entries.length + ' entr' + (entries.length === 1 ? 'y' : 'ies') + ', newest first.' }),
      table([['Seq', 'num'], 'Time', 'Action', 'Key', 'Account', 'Actor', 'Details'], rows, 'No audit entries match.'),
      more);
  }

  // -------------------------------------------------------------------- usage

  function chart(hourly, hours) {
    const HOUR = 3600000;
    const end = Math.floor(Date.now() / HOUR) * HOUR;
    const start = end - (hours - 1) * HOUR;
    const counts = new Map(hourly.map(([t, n]) => [t, n]));
    const bars = [];
    for (let t = start; t <= end; t += HOUR) bars.push([t, counts.get(t) || 0]);
    const max = Math.max(1, ...bars.map((b) => b[1]));
    const W = 960, H = 220, L = 44, B = 28, T = 12, R = 8;
    const bw = (W - L - R) / bars.length;
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'granted calls per hour' });
    for (const frac of [0, 0.5, 1]) {
      const y = T + (H - T - B) * (1 - frac);
      svg.append(s('line', { x1: L, x2: W - R, y1: y, y2: y }));
      svg.append(s('text', { x: L - 6, y: y + 3, 'text-anchor': 'end', text: String(Math.round(max * frac)) }));
    }
    bars.forEach(([t, n], i) => {
      const hgt = n === 0 ? 1 : Math.max(2, (H - T - B) * n / max);
      const rect = s('rect', {
        class: 'bar' + (n === 0 ? ' zero' : ''), x: L + i * bw + 1, y: H - B - hgt,
        width: Math.max(1, bw - 2), height: hgt,
      });
      rect.append(s('title', { text: fmtTime(t) + ': ' + n + ' granted' }));
      svg.append(rect);
      const step = hours <= 48 ? 6 : 24;
      if (new Date(t).getUTCHours() % step === 0) {
        const d = new Date(t).toISOString();
        svg.append(s('text', { x: L + i * bw + bw / 2, y: H - B + 14, 'text-anchor': 'middle',
          text: step === 24 || d.slice(11, 13) === '00' ? d.slice(5, 10) : d.slice(11, 13) + 'h' }));
      }
    });
    return h('div', { class: 'chart card', id: 'usage-chart' }, svg);
  }

  async function usagePage() {
    const q = query();
    const keys = await api('GET', '/keys');
    const keyId = q.get('key') || (keys[0] ? keys[0].key_id : '');
    const hours = Number(q.get('hours')) || 48;
    const pick = form('usage-form', [
      field('Key', select('key', keys.map((k) => [k.key_id, k.key_id + ' · ' + k.name + ' (' + keyStatus(k) + ')']))),
      field('Window', select('hours', [['24', 'last 24 hours'], ['48', 'last 48 hours'], ['168', 'last 7 days']])),
      h('button', { type: 'submit', class: 'secondary', text: 'Show' }),
    ], async (v) => { setQuery({ key: v.key, hours: v.hours }); await usagePage(); });
    if (!keys.length) { content(h('p', { class: 'muted', text: 'No keys yet.' })); return; }
    pick.elements.key.value = keyId;
    pick.elements.hours.value = String(hours);
    const u = await api('GET', '/keys/' + encodeURIComponent(keyId) + '/usage');
    const k = keys.find((x) => x.key_id === keyId);
    const lastBucket = u.hourly.length ? u.hourly[u.hourly.length - 1] : null;
    content(
      h('div', { class: 'card' }, pick),
      h('div', { class: 'card' },
        h('h2', {}, 'Key ', h('code', { text: u.key_id }), k ? ' · ' + k.name + ' · ' + keyStatus(k) : ''),
        h('div', { class: 'stats' },
          h('div', {}, h('span', { class: 'muted', text: 'Last used' }), h('b', { id: 'usage-last', text: u.last_used_at === null ? 'never' : fmtTime(u.last_used_at) })),
          h('div', {}, h('span', { class: 'muted', text: 'Granted (lifetime)' }), h('b', { id: 'usage-granted', text: u.granted })),
          h('div', {}, h('span', { class: 'muted', text: 'Refused (lifetime)' }), h('b', { id: 'usage-refused', text: u.refused })),
          h('div', {}, h('span', { class: 'muted', text: 'Last hour with traffic' }), h('b', { text: lastBucket ? fmtTime(lastBucket[0]) : '—' }))),
        h('p', { class: 'muted', text: 'Granted calls per hour (UTC). An empty tail means traffic stopped on this key.' })),
      chart(u.hourly, hours));
  }

  // --------------------------------------------------------------------- boot

  const PAGES = { accounts: accountsPage, keys: keysPage, routes: routesPage, limits: limitsPage, audit: auditPage, usage: usagePage };

  async function boot() {
    if (page === 'login') { loginPage(); return; }
    for (const a of document.querySelectorAll('[data-nav]')) if (a.dataset.nav === page) a.classList.add('active');
    document.getElementById('logout').addEventListener('click', () => guarded(async () => {
      await api('POST', '/logout', {});
      location.assign('/login');
    }));
    try {
      csrf = (await api('GET', '/session')).csrf;
      await PAGES[page]();
    } catch (e) {
      if (e instanceof ApiError) flashError(e); else flash('error', String(e));
      if (document.querySelector('#content .muted')) document.getElementById('content').replaceChildren();
    }
    document.body.dataset.ready = 'true';
  }

  boot();
}());
