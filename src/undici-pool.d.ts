// undici's connection pool alone: importing it by path keeps the rest of the package (fetch, WebSocket, caches) out of
// the bundle. The package has no exports map, so the path is public to Node and esbuild alike.
declare module 'undici/lib/dispatcher/pool.js' {
  import { Pool } from 'undici';
  export default Pool;
}
