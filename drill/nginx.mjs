// nginx as a keep-alive reverse proxy on loopback, for the drill (the load balancer) and bench/proxy.mjs (the yardstick).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Writes dir/nginx.conf: one worker listening on 127.0.0.1:port, proxying to servers (host:port strings) over pooled
 * keep-alive connections. upstreamExtra and locationExtra are added to the upstream and location blocks. Returns the
 * config's path.
 */
export function writeNginxConfig({
  dir,
  port,
  servers,
  serverOptions = '',
  keepalive = 16,
  upstreamExtra = '',
  locationExtra = '',
}) {
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const path = join(dir, 'nginx.conf');
  writeFileSync(
    path,
    `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  upstream backends {
${servers.map((s) => `    server ${s}${serverOptions ? ` ${serverOptions}` : ''};`).join('\n')}
    keepalive ${keepalive};
${upstreamExtra}
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${locationExtra}
    }
  }
}
`,
  );
  return path;
}
