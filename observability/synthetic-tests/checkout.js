// Synthetic test of checkout: its probes (and PATHS) answer, within the SLO.
//   k6 run observability/synthetic-tests/checkout.js
//   k6 run -e ENV=staging -e SCENARIO=burst observability/synthetic-tests/checkout.js

import { probe, serviceOptions } from './lib.js';

const SERVICE = 'checkout';

export const options = serviceOptions(SERVICE, { burstPeak: 60 });

export default function () {
  probe(SERVICE);
}
