#!/usr/bin/env node
// The npm package's command, and `kubectl drain-sidecar` as a kubectl plugin (an executable named
// kubectl-drain_sidecar on the PATH): the bundle, which needs nothing but Node.js 20 or later. inject, check and the
// webhook run as they do in the image; the sidecar itself runs too, without the sock_diag addon (it reads /proc/net).
require('../dist/drain-sidecar.cjs');
