// Report outcomes to rollwise from a service that evaluates its flags over OFREP (Node 18+, no
// dependency). rollwise judges a rollout from counts per (rollout, stage, window, side, segment,
// metric); this reporter keeps them for the rollouts of the SDK snapshot and posts them to
// /sdk/v1/events, the endpoint the Python SDK uses (its JSON schema: docs/api.md, "SDK API").
//
//   const reporter = new OutcomeReporter('http://127.0.0.1:8000', process.env.ROLLWISE_SDK_KEY);
//   await reporter.refresh();                      // and every minute: the rollouts change
//   const details = await client.getBooleanDetails('new-checkout', false, context);
//   ... serve the request ...
//   reporter.record('new-checkout', details, context, 'checkout.error', failed);
//   await reporter.flush();                        // every few seconds
//
// Counts only rate metrics, on the whole traffic and on each attribute a rollout splits by. It
// sends no replicates (docs/api.md, "Replicate aggregates"), so the judge treats requests as
// independent: right when each unit sends a few requests, too quick to conclude when some units
// send many and fail together (docs/judgement.md, "Clustered units").

// Evaluations that say nothing about a rollout's effect: a kill switch, an app without the
// code, a context without the unit, an error (the OFREP metadata carries rollwise's reason).
const UNATTRIBUTABLE = new Set(['killed', 'version_below_minimum', 'unit_missing', 'error']);

export class OutcomeReporter {
  constructor(baseUrl, sdkKey) {
    this.baseUrl = baseUrl;
    this.headers = { Authorization: `Bearer ${sdkKey}`, 'Content-Type': 'application/json' };
    this.rollouts = [];
    this.counts = new Map();
  }

  // The live rollouts: which flag, stage and variant, the metrics guarded, the window length.
  async refresh() {
    const answer = await fetch(`${this.baseUrl}/sdk/v1/snapshot`, { headers: this.headers });
    if (!answer.ok) throw new Error(`snapshot: HTTP ${answer.status}`);
    this.rollouts = (await answer.json()).rollouts;
  }

  // One outcome of `metric` for a request served `details` (OpenFeature evaluation details).
  record(flag, details, context, metric, failed) {
    if (details.errorCode || UNATTRIBUTABLE.has(details.flagMetadata?.['rollwise.reason'])) return;
    for (const rollout of this.rollouts) {
      if (rollout.flag !== flag || rollout.metrics[metric] !== 'rate') continue;
      const minutes = rollout.window_minutes;
      const window = Math.floor(Date.now() / 60000 / minutes) * minutes;
      const segments = [''];
      for (const attribute of rollout.segments ?? []) {
        if (typeof context[attribute] === 'string') segments.push(`${attribute}=${context[attribute]}`);
      }
      for (const segment of segments) {
        const key = JSON.stringify([rollout.id, rollout.stage, window, details.variant === rollout.variant, segment, metric]);
        const count = this.counts.get(key) ?? [0, 0];
        count[0] += 1;
        count[1] += failed ? 1 : 0;
        this.counts.set(key, count);
      }
    }
  }

  // Post what was counted. A 5xx or a network error keeps the counts for the next flush (a new
  // batch id: nothing was stored); a 4xx is a batch that will never be taken, and is dropped.
  async flush() {
    if (this.counts.size === 0) return;
    const counts = this.counts;
    this.counts = new Map();
    const aggregates = [...counts].map(([key, [requests, events]]) => {
      const [rollout, stage, window, exposed, segment, metric] = JSON.parse(key);
      return { rollout, stage, window, exposed, segment, metric, requests, events };
    });
    const body = JSON.stringify({ batch: crypto.randomUUID(), aggregates, exposures: [] });
    let answer;
    try {
      answer = await fetch(`${this.baseUrl}/sdk/v1/events`, { method: 'POST', headers: this.headers, body });
    } catch (error) {
      this.#keep(counts);
      throw error;
    }
    if (answer.status >= 500) this.#keep(counts);
    if (!answer.ok) throw new Error(`events: HTTP ${answer.status}: ${await answer.text()}`);
  }

  #keep(counts) {
    for (const [key, [requests, events]] of counts) {
      const count = this.counts.get(key) ?? [0, 0];
      this.counts.set(key, [count[0] + requests, count[1] + events]);
    }
  }
}
