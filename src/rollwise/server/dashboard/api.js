// The management API, called with the token the person signed in with. The token lives in
// sessionStorage (this tab only, gone when it closes), never in the address bar.

const KEY = "rollwise.token";

function article(word) {
  return /^[aeiou]/i.test(word) ? "an" : "a";
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }

  /** What to tell a person: a 403 says which role would do. */
  get explanation() {
    if (this.status === 401) return `The server refused the token: ${this.message}. Sign in again.`;
    if (this.status === 403) {
      const roles = /needs an? (\w+) token, this is an? (\w+) token/.exec(this.message);
      if (!roles) return `Not allowed: ${this.message}.`;
      return `This needs ${article(roles[1])} ${roles[1]} token; you are signed in with ${article(roles[2])} ${roles[2]} token.`;
    }
    if (this.status === 0) return `The server cannot be reached: ${this.message}`;
    return `${this.message} (HTTP ${this.status})`;
  }
}

export const token = {
  get() {
    return sessionStorage.getItem(KEY);
  },
  set(value) {
    sessionStorage.setItem(KEY, value.trim());
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

function detail(body, fallback) {
  // The API's one error body: {"error", "message", "details"} (older servers: {"detail"}).
  if (body && typeof body.message === "string") return body.message;
  if (!body || body.detail === undefined) return fallback;
  if (typeof body.detail === "string") return body.detail;
  if (body.detail.message) return body.detail.message;
  return JSON.stringify(body.detail);
}

/** JSON from the API; throws ApiError with the server's own explanation. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const secret = token.get();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, error.message);
  }
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, detail(parsed, response.statusText));
  return parsed;
}
