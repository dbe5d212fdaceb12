// Synthetic test of search: its probes (and PATHS) answer, within the SLO.
//   k6 run observability/synthetic-tests/search.js
//   k6 run -e ENV=staging -e SCENARIO=burst observability/synthetic-tests/search.js

import { probe, serviceOptions } from './lib.js';

const SERVICE = 'search';

export const options = serviceOptions(SERVICE, { burstPeak: 150 });

export default function () {
  probe(SERVICE);
}
