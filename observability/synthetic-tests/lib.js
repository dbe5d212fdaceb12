// Shared scenarios, thresholds and requests of the example services' synthetic tests (k6).
//
// Each service script calls `serviceOptions(...)` and `probe(...)`. Environment variables
// (k6 run -e NAME=value):
//   ENV        staging (default) or prod: which namespace's Service to call
//   BASE_URL   overrides http://<service>.<ENV>.svc.cluster.local:8080
//   SCENARIO   smoke (default: one virtual user for a minute, a synthetic probe) or
//              burst (a traffic step that should make the HPA scale out; staging only
//              unless ALLOW_PROD=1)
//   PATHS      extra comma-separated GET paths to call besides /healthz and /readyz

import http from 'k6/http';
import { check, sleep } from 'k6';

const PORT = 8080; // service.port in helm-charts/<service>/values-*.yaml

export const env = __ENV.ENV || 'staging';

// /healthz and /readyz are the probes every example chart defines; the images' own API is not
// part of this repository, so its paths come from PATHS.
export function paths() {
  const extra = (__ENV.PATHS || '').split(',').map((p) => p.trim()).filter((p) => p !== '');
  return ['/healthz', '/readyz', ...extra];
}

export function baseUrl(service) {
  return __ENV.BASE_URL || `http://${service}.${env}.svc.cluster.local:${PORT}`;
}

const SCENARIOS = {
  smoke: {
    executor: 'constant-vus',
    vus: 1,
    duration: '1m',
  },
  // 5 req/s, a step to `peak` req/s held for 10 minutes (long enough for the HPA and the
  // TrafficBurst alert's 10m `for`), then back down.
  burst: (peak) => ({
    executor: 'ramping-arrival-rate',
    startRate: 5,
    timeUnit: '1s',
    preAllocatedVUs: 20,
    maxVUs: 200,
    stages: [
      { target: 5, duration: '2m' },
      { target: peak, duration: '30s' },
      { target: peak, duration: '10m' },
      { target: 5, duration: '1m' },
    ],
  }),
};

// Thresholds follow the SLOs of observability/prometheus-rules/slo.rules.yaml: 99.9% without
// a 5xx and p95 under 500 ms. A short synthetic run allows 1% failures so that one lost request
// of a few dozen does not fail it.
export function serviceOptions(service, { burstPeak, p95Ms = 500 }) {
  const scenario = __ENV.SCENARIO || 'smoke';
  if (!(scenario in SCENARIOS)) {
    throw new Error(`SCENARIO must be one of ${Object.keys(SCENARIOS).join(', ')}, not ${scenario}`);
  }
  if (scenario === 'burst' && env === 'prod' && __ENV.ALLOW_PROD !== '1') {
    throw new Error('the burst scenario loads prod; set ALLOW_PROD=1 if that is really meant');
  }
  const definition = scenario === 'burst' ? SCENARIOS.burst(burstPeak) : SCENARIOS.smoke;
  return {
    scenarios: { [scenario]: definition },
    tags: { service, env },
    thresholds: {
      http_req_failed: ['rate<0.01'],
      http_req_duration: [`p(95)<${p95Ms}`],
      'http_req_duration{endpoint:/readyz}': ['p(95)<200'],
      checks: ['rate>0.99'],
    },
  };
}

export function probe(service) {
  const base = baseUrl(service);
  for (const path of paths()) {
    const response = http.get(`${base}${path}`, { tags: { endpoint: path } });
    check(response, {
      [`${path} answers 2xx`]: (r) => r.status >= 200 && r.status < 300,
    });
  }
  if ((__ENV.SCENARIO || 'smoke') === 'smoke') {
    sleep(1);
  }
}
