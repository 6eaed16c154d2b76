// Console shell: login (credential kept in sessionStorage for this tab only), header,
// hash routing between the pages, and the 2-second polling of the page on screen.

import { rpc, setToken } from './api.js';
import { el, replace, describeError, clearOutcome } from './ui.js';
import { createOverviewPage } from './overview.js';
import { createLicensesPage } from './licenses.js';
import { createBorrowsPage } from './borrows.js';
import { createHostsPage } from './hosts.js';
import { createAuditPage } from './audit.js';
import { createClusterPage } from './cluster.js';

const TOKEN_KEY = 'licensed.console.token';
const ANONYMOUS_KEY = 'licensed.console.anonymous';
const POLL_MS = 2000;

const PAGES = {
  overview: { title: 'Overview', create: createOverviewPage },
  licenses: { title: 'Licenses', create: createLicensesPage },
  borrows: { title: 'Borrows', create: createBorrowsPage },
  hosts: { title: 'Hosts', create: createHostsPage },
  audit: { title: 'Audit', create: createAuditPage },
  cluster: { title: 'Cluster', create: createClusterPage },
};

const state = {
  who: null,
  pageId: null,
  page: null,
};

const $ = (id) => document.getElementById(id);

// --- login -------------------------------------------------------------------------

function describeWho(who) {
  if (who.credential === 'admin-token') return 'admin token';
  if (who.credential === 'api-key') return `key ${String(who.keyId || '').slice(0, 4)}… (${who.scope})`;
  return `no credential (${who.scope})`;
}

function whoTitle(who) {
  const parts = [];
  if (who.keyId) parts.push(`key id ${who.keyId}`);
  if (who.name) parts.push(`name: ${who.name}`);
  parts.push(`scope: ${who.scope}`);
  parts.push(who.features && who.features.length ? `features: ${who.features.join(', ')}` : 'all features');
  return parts.join('\n');
}

function showLoginError(err) {
  const box = $('login-error');
  if (!box) return;
  if (err) {
    box.textContent = typeof err === 'string' ? err : describeError(err);
    box.hidden = false;
  } else {
    box.textContent = '';
    box.hidden = true;
  }
}

/** Offers "Continue without a key" only when the server answers WhoAmIV1 without one. */
async function probeAnonymous() {
  try {
    await rpc('WhoAmIV1', null, null);
  } catch (err) {
    return;
  }
  // The login form may have gone (signed in meanwhile) or been rebuilt.
  const slot = $('login-anonymous-slot');
  if (!slot || $('login-anonymous')) return;
  slot.replaceChildren(el('button', {
    type: 'button', id: 'login-anonymous', class: 'secondary', text: 'Continue without a key',
    on: { click: loginAnonymous },
  }));
}

const NAV = ['overview', 'licenses', 'borrows', 'hosts', 'audit', 'cluster'];

function loginCard() {
  return el('main', { class: 'login-card' },
    el('div', { class: 'brand brand-large' },
      el('img', { src: '/ui/assets/favicon.svg', alt: '', width: 32, height: 32 }),
      el('span', null, 'licensed ', el('span', { class: 'brand-sub', text: 'console' }))),
    el('h1', { text: 'Sign in' }),
    el('p', { class: 'muted', text: 'Use the cluster\u2019s admin token or an API key. It is kept in this browser tab only and forgotten when the tab closes.' }),
    el('form', { id: 'login-form', autocomplete: 'off', on: { submit: login } },
      el('div', { class: 'field' },
        el('label', { for: 'login-token', text: 'Admin token or API key' }),
        el('input', { id: 'login-token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true })),
      el('p', { id: 'login-error', class: 'load-error', role: 'alert', hidden: true }),
      el('div', { class: 'actions' },
        el('button', { id: 'login-submit', type: 'submit', text: 'Sign in' }),
        el('span', { id: 'login-anonymous-slot' }))));
}

function shell(who) {
  return [
    el('a', { class: 'skip-link', href: '#main', on: { click: (event) => { event.preventDefault(); $('main').focus(); } } }, 'Skip to content'),
    el('header', { class: 'topbar' },
      el('div', { class: 'topbar-row' },
        el('a', { class: 'brand', href: '#/overview' },
          el('img', { src: '/ui/assets/favicon.svg', alt: '', width: 24, height: 24 }),
          el('span', null, 'licensed ', el('span', { class: 'brand-sub', text: 'console' }))),
        el('nav', { id: 'nav', 'aria-label': 'Sections' },
          NAV.map((id) => el('a', { href: `#/${id}`, text: PAGES[id].title }))),
        el('div', { class: 'session' },
          el('span', { class: 'session-item' }, el('span', { class: 'muted', text: 'Signed in: ' }),
            el('span', { id: 'whoami', title: whoTitle(who), text: describeWho(who) })),
          el('span', { class: 'session-item' }, el('span', { class: 'muted', text: 'Served by ' }),
            el('span', { id: 'served-by' })),
          el('button', { id: 'logout', type: 'button', class: 'secondary small-btn', text: 'Sign out', on: { click: logout } }))),
      el('div', { class: 'outcome-bar' },
        el('div', { id: 'outcome', role: 'status', 'aria-live': 'polite' }),
        el('button', { id: 'outcome-dismiss', type: 'button', class: 'secondary small-btn', 'aria-label': 'Dismiss the message', text: '×', on: { click: clearOutcome } }))),
    el('main', { id: 'main', tabindex: '-1' }),
  ];
}

function showLogin(err) {
  stopPage();
  state.who = null;
  const app = $('app-view');
  app.hidden = true;
  replace(app);
  const view = $('login-view');
  replace(view, loginCard());
  view.hidden = false;
  document.title = 'Sign in · licensed console';
  showLoginError(err || null);
  probeAnonymous();
  $('login-token').focus();
}

async function login(event) {
  event.preventDefault();
  const input = $('login-token');
  const token = input.value.trim();
  if (!token) {
    showLoginError('Enter the admin token or an API key.');
    input.focus();
    return;
  }
  const button = $('login-submit');
  button.disabled = true;
  showLoginError(null);
  try {
    const who = await rpc('WhoAmIV1', null, token);
    if (who.credential === 'none') {
      // Where keys are optional, a bearer token that is neither the admin token nor a
      // key counts as no credential: signing in with it would silently mean nobody.
      showLoginError('This is neither the admin token nor an API key: the server treats it as no credential.');
        input.select();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.removeItem(ANONYMOUS_KEY);
    input.value = '';
    enter(who, token);
  } catch (err) {
    showLoginError(err);
    input.select();
  } finally {
    button.disabled = false;
  }
}

async function loginAnonymous() {
  try {
    const who = await rpc('WhoAmIV1', null, null);
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.setItem(ANONYMOUS_KEY, '1');
    enter(who, null);
  } catch (err) {
    showLoginError(err);
  }
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ANONYMOUS_KEY);
  setToken(null);
  showLogin(null);
}

function enter(who, token) {
  setToken(token);
  state.who = who;
  const view = $('login-view');
  view.hidden = true;
  replace(view);
  const app = $('app-view');
  replace(app, shell(who));
  app.hidden = false;
  setServedBy(who.node);
  state.pageId = null;
  route();
}

function setServedBy(node) {
  const box = $('served-by');
  if (!box || node === null || node === undefined) return;
  box.textContent = `node ${node}`;
  box.title = `This console talks to node ${node}`;
}

// --- routing -----------------------------------------------------------------------

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  return { id: path || 'overview', params: new URLSearchParams(query || '') };
}

function stopPage() {
  if (state.page && state.page.destroy) state.page.destroy();
  state.page = null;
  state.pageId = null;
}

function route() {
  if (!state.who) return;
  const { id, params } = parseHash();
  if (!PAGES[id]) {
    location.replace('#/overview');
    return;
  }
  if (state.pageId === id && state.page) {
    if (state.page.setParams) state.page.setParams(params);
    refreshNow();
    return;
  }
  stopPage();
  const ctx = {
    who: state.who,
    isAdmin: state.who.scope === 'admin',
    refresh: () => refreshNow(),
    setServedBy,
  };
  const page = PAGES[id].create(ctx, params);
  page.errorBox = el('div', { class: 'page-error' });
  page.root.prepend(page.errorBox);
  state.page = page;
  state.pageId = id;
  replace($('main'), page.root);
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.getAttribute('href') === `#/${id}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${PAGES[id].title} · licensed console`;
  refreshNow();
}

// --- polling -----------------------------------------------------------------------

/**
 * Loads the current page's data. A call while a load is running asks for one more
 * afterwards (an action's refresh must see the change) instead of overlapping.
 */
async function refreshNow() {
  const page = state.page;
  if (!page) return;
  if (page.busy) {
    page.again = true;
    return;
  }
  page.busy = true;
  try {
    await page.load();
    page.root.dataset.loaded = 'true';
    replace(page.errorBox);
  } catch (err) {
    replace(page.errorBox, el('p', { class: 'load-error', role: 'alert', text: `Could not load: ${describeError(err)}` }));
  } finally {
    page.busy = false;
  }
  if (page.again && state.page === page) {
    page.again = false;
    refreshNow();
  }
}

function poll() {
  if (document.hidden || !state.page || state.page.busy) return;
  refreshNow();
}

// --- start -------------------------------------------------------------------------

async function start() {
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) poll();
  });
  setInterval(poll, POLL_MS);

  const token = sessionStorage.getItem(TOKEN_KEY);
  const anonymous = sessionStorage.getItem(ANONYMOUS_KEY) === '1';
  if (!token && !anonymous) {
    showLogin(null);
    return;
  }
  try {
    const who = await rpc('WhoAmIV1', null, token || null);
    enter(who, token || null);
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ANONYMOUS_KEY);
    showLogin(err);
  }
}

start();
