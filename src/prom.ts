// prom-client's classes, each from its own file. Its index also loads the Pushgateway (and with it https, tls and
// zlib), the cluster aggregator, the Summary and the default metrics: about 6 MiB of private memory in every pod that a
// passive sidecar never uses (bench/memory.mjs). The default metrics are loaded only when asked for.

import Counter from 'prom-client/lib/counter.js';
import Gauge from 'prom-client/lib/gauge.js';
import Histogram from 'prom-client/lib/histogram.js';
import Registry from 'prom-client/lib/registry.js';

export { Counter, Gauge, Histogram, Registry };
