// Evaluates flags through the JavaScript OFREP provider, as a Node service would.
// Usage: node evaluate.mjs <base url> <sdk key> <cases.json>
// cases.json: [{"flag", "default", "context"}]; prints one JSON line per case:
// {"value", "variant", "reason", "errorCode"} from the OpenFeature evaluation details.
import { readFileSync } from 'node:fs';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const [url, key, path] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(path, 'utf8'));
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: url, headers: [['X-API-Key', key]] }));
const client = OpenFeature.getClient();
const results = [];
for (const { flag, default: fallback, context } of cases) {
  let details;
  if (typeof fallback === 'boolean') details = await client.getBooleanDetails(flag, fallback, context);
  else if (typeof fallback === 'number') details = await client.getNumberDetails(flag, fallback, context);
  else details = await client.getStringDetails(flag, fallback, context);
  results.push({
    value: details.value,
    variant: details.variant ?? null,
    reason: details.reason ?? null,
    errorCode: details.errorCode ?? null,
  });
}
process.stdout.write(JSON.stringify(results));
await OpenFeature.close();
