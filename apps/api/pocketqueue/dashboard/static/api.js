// Every call to the API goes through request(): same-origin cookie, the CSRF header the
// server requires on changes (sent on all calls, so no call can forget it), problem+json
// errors turned into ApiError, and a 401 sending the browser to the login page.

export const API = '/api/queue';
export const LOGIN_PAGE = '/dashboard/login';

/** An error answer of the API (or no answer at all: status 0). `detail` is for people. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = describe(problem) || `The API answered ${status}.`;
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem || {};
    this.detail = detail;
  }
}

// A problem's `detail` is meant to be shown; fall back to its title, then a status line.
// A validation problem lists what was wrong in `errors`: say which field and why.
function describe(problem) {
  if (!problem) return '';
  const { detail, title, errors } = problem;
  let text = '';
  if (typeof detail === 'string' && detail) text = detail;
  else if (detail !== undefined && detail !== null) text = JSON.stringify(detail);
  else if (typeof title === 'string') text = title;
  if (Array.isArray(errors) && errors.length) {
    const reasons = errors.slice(0, 5).map((e) => `${(e.loc || []).filter((part) => part !== 'query' && part !== 'body').join('.')}: ${e.msg}`);
    text = `${text.replace(/;? ?see `errors`\.?$/, '.')} ${reasons.join('; ')}`.trim();
  }
  return text;
}

let leaving = false;

/** Go to the login page (once: several calls may get a 401 together). */
export function goToLogin() {
  if (!leaving) {
    leaving = true;
    window.location.assign(LOGIN_PAGE);
  }
}

/**
 * Call the API. `path` is under /api/queue unless it starts with /dashboard.
 * query: an object (arrays repeat the parameter); body: sent as JSON.
 * Resolves with the parsed JSON (null for an empty answer); rejects with ApiError.
 * On a 401 it never settles: the page is on its way to the login form.
 */
export async function request(path, { method = 'GET', query, body, signal } = {}) {
  const url = buildUrl(path, query);
  const headers = { 'X-PocketQueue-CSRF': '1', Accept: 'application/json, application/problem+json' };
  const init = { method, credentials: 'same-origin', headers, signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error; // the view went away: nobody to tell
    throw new ApiError(0, { detail: 'Could not reach the API. Is it running? Check the connection and reload.' });
  }
  if (response.status === 401) {
    goToLogin();
    return new Promise(() => {});
  }
  const text = await response.text();
  const data = text ? parseJson(text) : null;
  if (!response.ok) throw new ApiError(response.status, data && typeof data === 'object' ? data : null);
  return data;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The URL of an API path with its query (arrays become repeated parameters, empties are left out). */
export function buildUrl(path, query) {
  const base = path.startsWith('/dashboard') ? path : `${API}${path}`;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    for (const item of [value].flat()) {
      if (item !== undefined && item !== null && item !== '') params.append(name, String(item));
    }
  }
  const search = params.toString();
  return search ? `${base}?${search}` : base;
}

/** The path segment for an id (job ids and batch ids are caller-chosen strings). */
export function seg(id) {
  return encodeURIComponent(id);
}

// Roles nest: admin can do all a write key can, which can do all a read key can.
const RANK = { read: 1, write: 2, admin: 3 };

/** Who is looking, and what they may do (actions are shown only when allowed). */
export function makeSession(raw) {
  const rank = RANK[raw.role] || 0;
  return {
    name: raw.name,
    role: raw.role,
    auth: raw.auth,
    canWrite: rank >= RANK.write,
    canAdmin: rank >= RANK.admin,
  };
}
