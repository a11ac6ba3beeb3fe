// A Node service as docs/ofrep.md describes it: flags over OFREP, outcomes through
// examples/ofrep/report-outcomes.mjs. Usage: node outcomes.mjs <base url> <sdk key> <users>
// Evaluates search-v2 for each user, fails every user whose number is a multiple of 7, posts the
// counts, and prints {"exposed": [requests, events], "baseline": [requests, events]}.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OutcomeReporter } from '../../../examples/ofrep/report-outcomes.mjs';

const [url, key, users] = process.argv.slice(2);
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: url, headers: [['X-API-Key', key]] }));
const client = OpenFeature.getClient();
const reporter = new OutcomeReporter(url, key);
await reporter.refresh();
const sent = { exposed: [0, 0], baseline: [0, 0] };
for (let index = 0; index < Number(users); index++) {
  const context = { targetingKey: `node-${index}`, region: 'eu-west' };
  const details = await client.getStringDetails('search-v2', 'control', context);
  const failed = index % 7 === 0;
  reporter.record('search-v2', details, context, 'checkout.error', failed);
  const side = sent[details.variant === 'treatment' ? 'exposed' : 'baseline'];
  side[0] += 1;
  side[1] += failed ? 1 : 0;
}
await reporter.flush();
process.stdout.write(JSON.stringify(sent));
await OpenFeature.close();
