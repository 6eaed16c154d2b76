// JSON-RPC client of the console: every call goes to POST /licenses on the node that
// served the page, with the session's bearer token when there is one.

/** A JSON-RPC error (or a transport failure, with code 0) as the console shows it. */
export class RpcError extends Error {
  constructor(code, message, reason, data) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.reason = reason || '';
    this.data = data;
  }

  /** "code message: reason", the form every failure is shown in. */
  describe() {
    const head = `Error ${this.code} ${this.message}`;
    return this.reason ? `${head}: ${this.reason}` : head;
  }
}

let bearer = null;
let nextId = 1;

/** Sets the credential sent with every later call; null sends none. */
export function setToken(token) {
  bearer = token || null;
}

export function getToken() {
  return bearer;
}

/**
 * Calls `method` and resolves to its `result`, or rejects with an RpcError. `token`
 * overrides the session's credential (undefined: use it; null: send none), which the
 * login screen needs to try a credential before keeping it.
 */
export async function rpc(method, params, token) {
  const credential = token === undefined ? bearer : token;
  const headers = { 'Content-Type': 'application/json' };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  const id = nextId++;
  const body = { jsonrpc: '2.0', method, id };
  if (params !== undefined && params !== null) body.params = params;
  let response;
  try {
    response = await fetch('/licenses', {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new RpcError(0, 'Network error', `the server did not answer: ${e.message}`);
  }
  let answer;
  try {
    answer = await response.json();
  } catch (e) {
    throw new RpcError(0, 'Bad answer', `HTTP ${response.status}: the answer is not JSON`);
  }
  if (answer && answer.error) {
    const err = answer.error;
    const reason = err.data && typeof err.data.reason === 'string' ? err.data.reason : '';
    throw new RpcError(err.code, err.message || 'Error', reason, err.data);
  }
  if (!answer || !('result' in answer)) {
    throw new RpcError(0, 'Bad answer', `HTTP ${response.status}: no result in the answer`);
  }
  return answer.result;
}

/** GET /readyz: {ready, reason, node}; 503 still carries the JSON body. */
export async function readiness() {
  let response;
  try {
    response = await fetch('/readyz', { cache: 'no-store', credentials: 'same-origin' });
  } catch (e) {
    throw new RpcError(0, 'Network error', `the server did not answer: ${e.message}`);
  }
  try {
    return await response.json();
  } catch (e) {
    return { ready: response.ok, reason: `HTTP ${response.status}`, node: null };
  }
}
