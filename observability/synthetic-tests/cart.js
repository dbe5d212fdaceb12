// Synthetic test of cart: its probes (and PATHS) answer, within the SLO.
//   k6 run observability/synthetic-tests/cart.js
//   k6 run -e ENV=staging -e SCENARIO=burst observability/synthetic-tests/cart.js

import { probe, serviceOptions } from './lib.js';

const SERVICE = 'cart';

export const options = serviceOptions(SERVICE, { burstPeak: 80 });

export default function () {
  probe(SERVICE);
}
